// Command cognito_sdk drives a Tessera cluster with the AWS SDK for Go
// (v1, Debian's golang-github-aws-aws-sdk-go-dev) exactly as an app written
// for Amazon Cognito would, with ONLY the endpoint changed: the SDK's own
// JSON 1.1 serializer, SigV4 signer, unsigned public calls and typed errors
// are what is under test, so nothing here builds a request by hand.
//
// It is run by tests/cognito_go_sdk.rs against a three-node cluster, and
// spreads the flow over the nodes (admin calls on node 1, sign-up on node
// 2, sign-in on node 3) so that a front which worked only on the leader
// would fail.
//
// Usage:
//
//	cognito_sdk -endpoints http://127.0.0.1:7700,http://... -key-id AKIA... -secret ...
//
// or the environment variables TESSERA_ENDPOINTS, TESSERA_KEY_ID and
// TESSERA_SECRET. It prints one JSON line, {"steps":[{"name","ok","error"}]},
// and exits 0 whatever the steps' outcome: the Rust test judges the steps,
// and a non-zero exit means the program itself could not run.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/request"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	idp "github.com/aws/aws-sdk-go/service/cognitoidentityprovider"
)

// Step is one checked call (or group of calls) of the flow.
type Step struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

type report struct {
	Steps []Step `json:"steps"`
}

const (
	username = "go-sdk-ann"
	password = "Correct-Horse-9!"
	email    = "ann@example.com"
	// How long a call on another node may keep failing with a "not yet
	// there" error: writes are acknowledged once committed, but a follower
	// serves reads from its own applied state, which may trail by a few
	// heartbeats (and the admin key is read locally on each node).
	propagation = 10 * time.Second
)

func main() {
	endpoints := flag.String("endpoints", os.Getenv("TESSERA_ENDPOINTS"), "comma-separated node URLs (node 1 first)")
	keyID := flag.String("key-id", os.Getenv("TESSERA_KEY_ID"), "admin access key id")
	secret := flag.String("secret", os.Getenv("TESSERA_SECRET"), "admin access key secret")
	flag.Parse()

	urls := strings.Split(*endpoints, ",")
	if *endpoints == "" || *keyID == "" || *secret == "" {
		fmt.Fprintln(os.Stderr, "need -endpoints, -key-id and -secret (or TESSERA_ENDPOINTS, TESSERA_KEY_ID, TESSERA_SECRET)")
		os.Exit(2)
	}
	// Fewer than three nodes: reuse the last one, so the program also runs
	// against a single dev node.
	for len(urls) < 3 {
		urls = append(urls, urls[len(urls)-1])
	}

	r := run(urls, *keyID, *secret)
	out, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "encoding the report:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

// newSession is the whole of the configuration an app changes: the
// endpoint (and a region, which Tessera requires to be `local` in the
// signature's scope). Everything else is the SDK's default.
//
// TESSERA_SDK_DEBUG=1 makes the SDK log every request and answer with
// their bodies to stderr, to see what it sent when a step fails.
func newSession(endpoint string, creds *credentials.Credentials) *session.Session {
	cfg := &aws.Config{
		Endpoint:    aws.String(endpoint),
		Region:      aws.String("local"),
		Credentials: creds,
		// A bound per call, so a hung node fails a step instead of the run.
		HTTPClient: &http.Client{Timeout: 15 * time.Second},
	}
	if os.Getenv("TESSERA_SDK_DEBUG") != "" {
		cfg.LogLevel = aws.LogLevel(aws.LogDebugWithHTTPBody)
		cfg.Logger = aws.LoggerFunc(func(args ...interface{}) { fmt.Fprintln(os.Stderr, args...) })
	}
	return session.Must(session.NewSession(cfg))
}

func run(urls []string, keyID, secret string) report {
	admin := credentials.NewStaticCredentials(keyID, secret, "")
	// Signed with the admin key: the admin actions.
	adminIdp := idp.New(newSession(urls[0], admin))
	adminIdentity := cognitoidentity.New(newSession(urls[0], admin))
	// Unsigned, as an app on a device calls Cognito (no AWS credentials).
	// The SDK's models already mark SignUp, InitiateAuth, GetUser and GetId
	// as unsigned; AnonymousCredentials also proves that no call here
	// depends on a signature it should not need.
	anon := credentials.AnonymousCredentials
	publicIdp2 := idp.New(newSession(urls[1], anon))
	publicIdp3 := idp.New(newSession(urls[2], anon))
	publicIdentity2 := cognitoidentity.New(newSession(urls[1], anon))

	var r report
	// step runs f and records its outcome; a later step that needs an
	// earlier one's result is skipped with a clear error when it is missing.
	step := func(name string, f func() error) bool {
		err := f()
		s := Step{Name: name, OK: err == nil}
		if err != nil {
			s.Error = err.Error()
		}
		r.Steps = append(r.Steps, s)
		return err == nil
	}
	skip := func(name, because string) {
		r.Steps = append(r.Steps, Step{Name: name, Error: "skipped: " + because + " failed"})
	}

	var poolID, poolArn, clientID, userSub, accessToken, refreshToken, identityPoolID string

	// --- user pools (cognito-idp) ---
	ok := step("CreateUserPool (signed, node 1)", func() error {
		var requestID string
		var out *idp.CreateUserPoolOutput
		// The key was created through gRPC just before; node 1 checks
		// signatures against its own applied copy.
		err := retryWhile(propagation, []string{"UnrecognizedClientException"}, func() error {
			var err error
			out, err = adminIdp.CreateUserPoolWithContext(aws.BackgroundContext(), &idp.CreateUserPoolInput{
				PoolName:               aws.String("go-sdk"),
				AutoVerifiedAttributes: aws.StringSlice([]string{"email"}),
			}, request.WithGetResponseHeader("x-amzn-RequestId", &requestID))
			return err
		})
		if err != nil {
			return err
		}
		if out.UserPool == nil || aws.StringValue(out.UserPool.Id) == "" {
			return fmt.Errorf("no UserPool.Id in %v", out)
		}
		poolID = aws.StringValue(out.UserPool.Id)
		if !strings.HasPrefix(poolID, "local_") {
			return fmt.Errorf("pool id %q is not `local_...` (Cognito's `region_XXXX`)", poolID)
		}
		// Timestamps are epoch seconds on the wire; the SDK decodes them
		// into time.Time, so a wrong unit shows as a date far off.
		if c := aws.TimeValue(out.UserPool.CreationDate); time.Since(c).Abs() > time.Hour {
			return fmt.Errorf("CreationDate %v is not about now (timestamp unit?)", c)
		}
		if requestID == "" {
			return errors.New("no x-amzn-RequestId header on the answer")
		}
		poolArn = aws.StringValue(out.UserPool.Arn)
		return nil
	})
	if ok {
		// Its own step, so that the flow below still runs without it: apps
		// pass the ARN to IAM policies and parse the region and account
		// out of it.
		step("UserPool.Arn is arn:aws:cognito-idp:local:ACCOUNT:userpool/ID", func() error {
			if !strings.HasPrefix(poolArn, "arn:aws:cognito-idp:local:") || !strings.HasSuffix(poolArn, ":userpool/"+poolID) {
				return fmt.Errorf("CreateUserPool answered UserPool.Arn %q for pool %s", poolArn, poolID)
			}
			return nil
		})
	} else {
		skip("UserPool.Arn is arn:aws:cognito-idp:local:ACCOUNT:userpool/ID", "CreateUserPool")
	}
	if ok {
		ok = step("CreateUserPoolClient (signed, node 1)", func() error {
			out, err := adminIdp.CreateUserPoolClient(&idp.CreateUserPoolClientInput{
				UserPoolId: aws.String(poolID),
				ClientName: aws.String("go-web"),
				ExplicitAuthFlows: aws.StringSlice([]string{
					idp.ExplicitAuthFlowsTypeAllowUserPasswordAuth,
					idp.ExplicitAuthFlowsTypeAllowRefreshTokenAuth,
				}),
			})
			if err != nil {
				return err
			}
			if out.UserPoolClient == nil || aws.StringValue(out.UserPoolClient.ClientId) == "" {
				return fmt.Errorf("no UserPoolClient.ClientId in %v", out)
			}
			clientID = aws.StringValue(out.UserPoolClient.ClientId)
			if got := aws.StringValue(out.UserPoolClient.UserPoolId); got != poolID {
				return fmt.Errorf("client's UserPoolId is %q, want %q", got, poolID)
			}
			return nil
		})
	} else {
		skip("CreateUserPoolClient (signed, node 1)", "CreateUserPool")
	}

	if ok {
		ok = step("SignUp (unsigned, node 2)", func() error {
			var out *idp.SignUpOutput
			err := retryWhile(propagation, []string{idp.ErrCodeResourceNotFoundException}, func() error {
				var err error
				out, err = publicIdp2.SignUp(signUpInput(clientID))
				return err
			})
			if err != nil {
				return err
			}
			userSub = aws.StringValue(out.UserSub)
			if userSub == "" {
				return fmt.Errorf("no UserSub in %v", out)
			}
			if aws.BoolValue(out.UserConfirmed) {
				return errors.New("UserConfirmed is true before any confirmation")
			}
			return nil
		})
	} else {
		skip("SignUp (unsigned, node 2)", "CreateUserPoolClient")
	}

	if ok {
		step("SignUp twice gives UsernameExistsException (node 2)", func() error {
			_, err := publicIdp2.SignUp(signUpInput(clientID))
			var typed *idp.UsernameExistsException
			return expectTyped(err, idp.ErrCodeUsernameExistsException, errors.As(err, &typed))
		})
		ok = step("AdminConfirmSignUp (signed, node 1)", func() error {
			return retryWhile(propagation, []string{idp.ErrCodeUserNotFoundException}, func() error {
				_, err := adminIdp.AdminConfirmSignUp(&idp.AdminConfirmSignUpInput{
					UserPoolId: aws.String(poolID),
					Username:   aws.String(username),
				})
				return err
			})
		})
	} else {
		skip("SignUp twice gives UsernameExistsException (node 2)", "SignUp")
		skip("AdminConfirmSignUp (signed, node 1)", "SignUp")
	}

	if ok {
		ok = step("InitiateAuth USER_PASSWORD_AUTH (unsigned, node 3)", func() error {
			var out *idp.InitiateAuthOutput
			// Node 3 may not have applied the confirmation yet.
			err := retryWhile(propagation, []string{idp.ErrCodeUserNotConfirmedException, idp.ErrCodeUserNotFoundException, idp.ErrCodeResourceNotFoundException}, func() error {
				var err error
				out, err = publicIdp3.InitiateAuth(&idp.InitiateAuthInput{
					ClientId:       aws.String(clientID),
					AuthFlow:       aws.String(idp.AuthFlowTypeUserPasswordAuth),
					AuthParameters: aws.StringMap(map[string]string{"USERNAME": username, "PASSWORD": password}),
				})
				return err
			})
			if err != nil {
				return err
			}
			if out.ChallengeName != nil {
				return fmt.Errorf("unexpected challenge %s", aws.StringValue(out.ChallengeName))
			}
			a := out.AuthenticationResult
			if a == nil {
				return fmt.Errorf("no AuthenticationResult in %v", out)
			}
			accessToken, refreshToken = aws.StringValue(a.AccessToken), aws.StringValue(a.RefreshToken)
			if accessToken == "" || refreshToken == "" || aws.StringValue(a.IdToken) == "" {
				return errors.New("AuthenticationResult lacks AccessToken, IdToken or RefreshToken")
			}
			if aws.StringValue(a.TokenType) != "Bearer" || aws.Int64Value(a.ExpiresIn) <= 0 {
				return fmt.Errorf("TokenType %q, ExpiresIn %d: want Bearer and > 0", aws.StringValue(a.TokenType), aws.Int64Value(a.ExpiresIn))
			}
			return nil
		})
	} else {
		skip("InitiateAuth USER_PASSWORD_AUTH (unsigned, node 3)", "AdminConfirmSignUp")
	}

	if ok {
		step("InitiateAuth REFRESH_TOKEN_AUTH (unsigned, node 3)", func() error {
			out, err := publicIdp3.InitiateAuth(&idp.InitiateAuthInput{
				ClientId:       aws.String(clientID),
				AuthFlow:       aws.String(idp.AuthFlowTypeRefreshTokenAuth),
				AuthParameters: aws.StringMap(map[string]string{"REFRESH_TOKEN": refreshToken}),
			})
			if err != nil {
				return err
			}
			a := out.AuthenticationResult
			if a == nil || aws.StringValue(a.AccessToken) == "" || aws.StringValue(a.IdToken) == "" {
				return fmt.Errorf("no new AccessToken and IdToken in %v", out)
			}
			return nil
		})
		step("GetUser with the access token (unsigned, node 2)", func() error {
			out, err := publicIdp2.GetUser(&idp.GetUserInput{AccessToken: aws.String(accessToken)})
			if err != nil {
				return err
			}
			if got := aws.StringValue(out.Username); got != username {
				return fmt.Errorf("Username %q, want %q", got, username)
			}
			attrs := map[string]string{}
			for _, a := range out.UserAttributes {
				attrs[aws.StringValue(a.Name)] = aws.StringValue(a.Value)
			}
			if attrs["sub"] != userSub || attrs["email"] != email {
				return fmt.Errorf("attributes %v: want sub %q and email %q", attrs, userSub, email)
			}
			return nil
		})
		step("wrong password gives NotAuthorizedException (node 3)", func() error {
			_, err := publicIdp3.InitiateAuth(&idp.InitiateAuthInput{
				ClientId:       aws.String(clientID),
				AuthFlow:       aws.String(idp.AuthFlowTypeUserPasswordAuth),
				AuthParameters: aws.StringMap(map[string]string{"USERNAME": username, "PASSWORD": "Wrong-Horse-9!"}),
			})
			var typed *idp.NotAuthorizedException
			return expectTyped(err, idp.ErrCodeNotAuthorizedException, errors.As(err, &typed))
		})
	} else {
		for _, n := range []string{
			"InitiateAuth REFRESH_TOKEN_AUTH (unsigned, node 3)",
			"GetUser with the access token (unsigned, node 2)",
			"wrong password gives NotAuthorizedException (node 3)",
		} {
			skip(n, "InitiateAuth USER_PASSWORD_AUTH")
		}
	}

	// The SDK's signer with a wrong secret: refused with AWS's name for it,
	// and not taken for an unsigned call.
	step("a wrong secret gives InvalidSignatureException (node 1)", func() error {
		forged := idp.New(newSession(urls[0], credentials.NewStaticCredentials(keyID, secret+"x", "")))
		_, err := forged.ListUserPools(&idp.ListUserPoolsInput{MaxResults: aws.Int64(1)})
		// Not a modelled exception of cognito-idp: the SDK's generic error.
		return expectTyped(err, "InvalidSignatureException", true)
	})

	// --- identity pools (cognito-identity), a second service and signing name ---
	ok = step("CreateIdentityPool (signed, node 1)", func() error {
		var out *cognitoidentity.IdentityPool
		err := retryWhile(propagation, []string{"UnrecognizedClientException"}, func() error {
			var err error
			out, err = adminIdentity.CreateIdentityPool(&cognitoidentity.CreateIdentityPoolInput{
				IdentityPoolName:               aws.String("go_sdk"),
				AllowUnauthenticatedIdentities: aws.Bool(true),
			})
			return err
		})
		if err != nil {
			return err
		}
		identityPoolID = aws.StringValue(out.IdentityPoolId)
		if !strings.HasPrefix(identityPoolID, "local:") {
			return fmt.Errorf("identity pool id %q is not `local:uuid`", identityPoolID)
		}
		if !aws.BoolValue(out.AllowUnauthenticatedIdentities) {
			return errors.New("AllowUnauthenticatedIdentities is not true in the answer")
		}
		return nil
	})
	if ok {
		step("GetId, a guest identity (unsigned, node 2)", func() error {
			var out *cognitoidentity.GetIdOutput
			err := retryWhile(propagation, []string{cognitoidentity.ErrCodeResourceNotFoundException}, func() error {
				var err error
				out, err = publicIdentity2.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(identityPoolID)})
				return err
			})
			if err != nil {
				return err
			}
			if id := aws.StringValue(out.IdentityId); !strings.HasPrefix(id, "local:") {
				return fmt.Errorf("IdentityId %q is not `local:uuid`", id)
			}
			return nil
		})
	} else {
		skip("GetId, a guest identity (unsigned, node 2)", "CreateIdentityPool")
	}
	return r
}

func signUpInput(clientID string) *idp.SignUpInput {
	return &idp.SignUpInput{
		ClientId:       aws.String(clientID),
		Username:       aws.String(username),
		Password:       aws.String(password),
		UserAttributes: []*idp.AttributeType{{Name: aws.String("email"), Value: aws.String(email)}},
	}
}

// expectTyped checks that err is the SDK's modelled exception `code`: both
// the generic awserr.Error code an app switches on and the generated
// struct (isTyped), which the SDK builds only when the answer's __type
// names a modelled exception.
func expectTyped(err error, code string, isTyped bool) error {
	if err == nil {
		return fmt.Errorf("succeeded; want %s", code)
	}
	var ae awserr.Error
	if !errors.As(err, &ae) {
		return fmt.Errorf("error %T %v is not an awserr.Error; want %s", err, err, code)
	}
	if ae.Code() != code {
		return fmt.Errorf("error code %q (%v); want %s", ae.Code(), err, code)
	}
	if !isTyped {
		return fmt.Errorf("error %T is not the SDK's typed %s", err, code)
	}
	var rf awserr.RequestFailure
	if !errors.As(err, &rf) || rf.StatusCode() != 400 || rf.RequestID() == "" {
		return fmt.Errorf("error %v: want HTTP 400 with a request id", err)
	}
	if ae.Message() == "" {
		return fmt.Errorf("error %s has no message", code)
	}
	return nil
}

// retryWhile calls f until it succeeds, fails with an error code not in
// `codes`, or `within` has passed. It absorbs only the lag of a node's
// applied state, never a refusal that would stay.
func retryWhile(within time.Duration, codes []string, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		var ae awserr.Error
		if err == nil || !errors.As(err, &ae) || !contains(codes, ae.Code()) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

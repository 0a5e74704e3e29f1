// Passkeys on Tessera's hosted sign-in page: the page's only script,
// served from the page's own origin (the CSP allows nothing else).
//
// A passkey form (`#passkey-form`) carries the page's sealed request and
// CSRF token. Its button (`data-ceremony="get"` to sign in, `"create"` to
// add a passkey) posts the form with `step=options` to get the WebAuthn
// options (JSON), runs the browser's ceremony, and submits the form with
// the credential as JSON (`PublicKeyCredential.toJSON()`'s shape). The
// server checks everything; this file only carries bytes. A cancelled
// ceremony or a refused request shows the button's `data-error` text (the
// page's language) and leaves the rest of the page as it was.
(function () {
  "use strict";

  function fromB64u(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function toB64u(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      var copy = Object.assign({}, c);
      copy.id = fromB64u(c.id);
      return copy;
    });
  }

  // The options JSON (bare, or wrapped in `publicKey`) as the API wants it.
  function creationOptions(json) {
    var o = Object.assign({}, json.publicKey || json);
    o.challenge = fromB64u(o.challenge);
    o.user = Object.assign({}, o.user, { id: fromB64u(o.user.id) });
    o.excludeCredentials = withIds(o.excludeCredentials);
    return o;
  }

  function requestOptions(json) {
    var o = Object.assign({}, json.publicKey || json);
    o.challenge = fromB64u(o.challenge);
    o.allowCredentials = withIds(o.allowCredentials);
    return o;
  }

  // RegistrationResponseJSON / AuthenticationResponseJSON.
  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") {
      return cred.toJSON();
    }
    var r = cred.response;
    var response = { clientDataJSON: toB64u(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64u(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64u(r.authenticatorData);
      response.signature = toB64u(r.signature);
      if (r.userHandle) {
        response.userHandle = toB64u(r.userHandle);
      }
    }
    return {
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      response: response,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(),
    };
  }

  function showError(text) {
    var p = document.getElementById("passkey-error");
    if (p) {
      p.textContent = text;
      p.hidden = false;
    }
  }

  function run(button) {
    var form = button.form;
    var fallback = button.getAttribute("data-error") || "";
    var body = new URLSearchParams(new FormData(form));
    body.set("step", "options");
    button.disabled = true;
    var p = document.getElementById("passkey-error");
    if (p) {
      p.hidden = true;
    }
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (r) {
        return r.json().then(
          function (j) {
            if (!r.ok || !j.options) {
              throw new Error(j.error || fallback);
            }
            return j;
          },
          function () {
            throw new Error(fallback);
          }
        );
      })
      .then(function (j) {
        var ceremony =
          button.getAttribute("data-ceremony") === "create"
            ? navigator.credentials.create({ publicKey: creationOptions(j.options) })
            : navigator.credentials.get({ publicKey: requestOptions(j.options) });
        return ceremony.then(function (cred) {
          if (!cred) {
            throw new Error(fallback);
          }
          if (j.session && form.elements.session) {
            form.elements.session.value = j.session;
          }
          form.elements.credential.value = JSON.stringify(credentialJSON(cred));
          form.submit();
        });
      })
      .catch(function (e) {
        // A DOMException (cancelled, timed out, not allowed) says
        // nothing a person can act on: the page's own text does.
        showError(e instanceof DOMException || !e.message ? fallback : e.message);
        button.disabled = false;
      });
  }

  function start() {
    if (!window.PublicKeyCredential || !navigator.credentials || !window.fetch) {
      return;
    }
    var buttons = document.querySelectorAll("button[data-ceremony]");
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      b.hidden = false;
      if (b.form) {
        b.form.hidden = false;
      }
      b.addEventListener("click", function (ev) {
        run(ev.currentTarget);
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

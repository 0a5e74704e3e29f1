//! What every hosted page shares: the look (branding and language), the
//! HTML shell with its safety headers, the CSRF token, cookies and
//! redirects.
//!
//! The shell carries the classic hosted UI's `-customizable` classes, so a
//! pool's `SetUICustomization` CSS styles the same elements it would on
//! Cognito. Branding values reach the page only as validated hex colours,
//! sanitized CSS, an inlined `data:` image and escaped text: nothing a
//! pool administrator sets can run script on the page or load from
//! elsewhere.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::strings;
use crate::api::http::html::escape;
use crate::model::branding::{Branding, COLORS};

/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "tessera_csrf";
/// The session cookie's name: a signed-in browser is not asked again
/// (single sign-on across the pool's apps) until it expires or signs out.
pub const SESSION_COOKIE: &str = "tessera_session";

/// How one browser sees one pool's page: the language chosen for it, and
/// the branding of the app client (or the pool's default).
#[derive(Debug, Clone)]
pub struct Look {
    /// The pool, for form actions and cookie paths.
    pub pool_id: String,
    /// The language tag shown (`en` unless a loaded one was chosen).
    pub lang: String,
    strings: BTreeMap<String, String>,
    colors: BTreeMap<String, String>,
    logo: Option<String>,
    css: String,
}

impl Look {
    /// The built-in look in English.
    pub fn plain(pool_id: &str) -> Look {
        Look {
            pool_id: pool_id.to_string(),
            lang: "en".to_string(),
            strings: BTreeMap::new(),
            colors: BTreeMap::new(),
            logo: None,
            css: String::new(),
        }
    }

    /// The look of `branding` (if any) in the language chosen from the
    /// `lang` parameter and the browser's `Accept-Language`.
    pub fn new(pool_id: &str, branding: Option<&Branding>, lang: Option<&str>, headers: &HeaderMap) -> Look {
        let mut look = Look::plain(pool_id);
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
        let Some(b) = branding else {
            look.lang = strings::choose(lang, accept, &[]);
            return look;
        };
        look.css = b.css.clone();
        if b.use_provided_values {
            look.lang = strings::choose(lang, accept, &[]);
            return look;
        }
        let mut settings = b.parsed_settings();
        let available: Vec<String> = settings.languages.keys().cloned().collect();
        look.lang = strings::choose(lang, accept, &available);
        look.strings = settings.languages.remove(&look.lang).unwrap_or_default();
        look.colors = settings.colors;
        look.logo = b.asset("FORM_LOGO").map(|a| {
            format!(
                "data:{};base64,{}",
                a.media_type(),
                base64::engine::general_purpose::STANDARD.encode(&a.bytes)
            )
        });
        look
    }

    /// The text of `key` in this look's language (English if the language
    /// does not have it), unescaped.
    pub fn t(&self, key: &str) -> String {
        self.strings
            .get(key)
            .cloned()
            .or_else(|| strings::english(key).map(str::to_string))
            .unwrap_or_else(|| key.to_string())
    }

    /// [`Look::t`] with `{name}` placeholders filled in.
    pub fn t_with(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key);
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }

    /// What to show for a flow's error: the language's text for its
    /// exception if it has one, else the flow's own message.
    pub fn error_text(&self, exception: &str, message: &str) -> String {
        self.strings
            .get(&format!("error.{exception}"))
            .cloned()
            .unwrap_or_else(|| message.to_string())
    }

    fn color(&self, name: &str) -> &str {
        self.colors
            .get(name)
            .map(String::as_str)
            .or_else(|| COLORS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
            .unwrap_or("#000")
    }

    /// The hidden field that keeps the language across the page's posts.
    pub fn lang_field(&self) -> String {
        format!("<input type=\"hidden\" name=\"lang\" value=\"{}\">", escape(&self.lang))
    }

    /// A complete page: `body` is HTML already escaped by the caller.
    /// `csrf`: sets this token as the CSRF cookie.
    pub fn page(&self, status: StatusCode, title: &str, body: &str, csrf: Option<&str>) -> Response {
        let logo = self
            .logo
            .as_deref()
            .map(|src| {
                format!(
                    "<div class=\"banner-customizable\"><img class=\"logo-customizable\" src=\"{}\" alt=\"\"></div>",
                    escape(src)
                )
            })
            .unwrap_or_default();
        let html = format!(
            "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\"><title>{t}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;\
             color:{text};background:{bg}}}\
             label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
             button,.idpButton-customizable{{display:inline-block;margin-top:1.2rem;font-size:1.05rem;padding:.6rem 1.4rem;\
             background:{primary};color:{button_text};border:0;border-radius:4px;text-decoration:none}}\
             button.redirect-customizable{{background:none;color:{link};padding:0;margin-top:.8rem;\
             font-size:.95rem;text-decoration:underline;cursor:pointer}}\
             a{{color:{link}}}.error{{color:{error}}}.logo-customizable{{max-width:100%;max-height:6rem}}\
             {css}</style></head>\
             <body class=\"background-customizable\">{logo}<h1 class=\"textDescription-customizable\">{t}</h1>{body}</body></html>",
            lang = escape(&self.lang),
            t = escape(title),
            text = self.color("text"),
            bg = self.color("background"),
            primary = self.color("primary"),
            button_text = self.color("button_text"),
            link = self.color("link"),
            error = self.color("error"),
            css = self.css,
        );
        let mut r = (status, html).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        // No form-action: a form post ends in a redirect to the app, which
        // form-action would block.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
        if let Some(value) = csrf {
            set_cookie(&mut r, &self.pool_id, CSRF_COOKIE, value, 1800);
        }
        r
    }

    /// [`Look::page`] for a page that loads the page's one script (the
    /// passkey buttons, [`super::passkey`]): the CSP then allows scripts
    /// and fetches from this origin only. Still no inline script, no other
    /// host; every other page keeps the script-free policy.
    pub fn page_scripted(&self, status: StatusCode, title: &str, body: &str, csrf: Option<&str>) -> Response {
        let mut r = self.page(status, title, body, csrf);
        r.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
                 img-src 'self' https: data:; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
        r
    }

    /// A page saying why the flow cannot go on.
    pub fn error_page(&self, status: StatusCode, message: &str) -> Response {
        self.page(
            status,
            &self.t("error.title"),
            &format!(
                "<p class=\"error errorMessage-customizable\" role=\"alert\">{}</p><p>{}</p>",
                escape(message),
                escape(&self.t("error.restart"))
            ),
            None,
        )
    }

    /// A note shown above a form (where a code went, what just
    /// happened), or nothing.
    pub fn note_paragraph(&self, note: Option<&str>) -> String {
        note.map(|n| {
            format!(
                "<p class=\"textDescription-customizable\" id=\"note\">{}</p>",
                escape(n)
            )
        })
        .unwrap_or_default()
    }

    /// The error paragraph shown above a form again, or nothing.
    pub fn error_paragraph(&self, error: Option<&str>) -> String {
        error
            .map(|e| {
                format!(
                    "<p class=\"error errorMessage-customizable\" role=\"alert\">{}</p>",
                    escape(e)
                )
            })
            .unwrap_or_default()
    }
}

/// A fresh CSRF token (the cookie's value and the form's field).
pub fn new_csrf() -> String {
    hex::encode(crate::clock::random_bytes::<32>())
}

/// Adds a `Secure; HttpOnly; SameSite=Lax` cookie scoped to the pool's
/// pages; `max_age` 0 deletes it.
pub fn set_cookie(r: &mut Response, pool_id: &str, name: &str, value: &str, max_age: u64) {
    let c = format!("{name}={value}; Path=/{pool_id}/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A 303 to `location` (a form post becomes the app's GET).
pub fn redirect(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// Whether the form's CSRF token equals the cookie's (constant time).
pub fn csrf_ok(headers: &HeaderMap, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

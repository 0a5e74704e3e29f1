//! The hosted page's look per pool and app client: Cognito's managed-login
//! branding (`CreateManagedLoginBranding`: settings and image assets) and
//! the classic hosted UI's customization (`SetUICustomization`: a logo and
//! CSS), kept as one record, since both dress the same page.
//!
//! A branding belongs to one app client, or to the whole pool (`client_id`
//! empty, Cognito's `ALL`); a client without its own uses the pool's.
//!
//! `settings` is a JSON document kept as validated text, so the set of
//! settings can grow without changing how old log entries decode:
//!
//! ```json
//! {"colors": {"primary": "#0a66c2", "background": "#ffffff"},
//!  "languages": {"de": {"signin.title": "Anmelden"}}}
//! ```
//!
//! Colours are hex (`#rgb`, `#rrggbb`, `#rrggbbaa`) and go into the page
//! only through fixed CSS rules. Languages map the page's string keys
//! (`api::http::oauth::hosted::strings::ENGLISH`) to text, which the page
//! escapes; an unknown key is refused, so a typo does not pass silently.
//! The classic CSS is accepted only in the shape Cognito documents
//! (its `-customizable` classes and plain properties), parsed and written
//! back by [`sanitize_css`]; nothing in it can load a resource or leave
//! its `<style>` element.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ValidationError;

/// Longest settings document.
pub const MAX_SETTINGS_BYTES: usize = 256 * 1024;
/// Most image assets of one branding.
pub const MAX_ASSETS: usize = 15;
/// Largest image (the page inlines the logo, so it stays small; Cognito's
/// classic `ImageFile` limit is 100 KB).
pub const MAX_ASSET_BYTES: usize = 100 * 1024;
/// Longest classic CSS (Cognito: 131,072 characters).
pub const MAX_CSS_CHARS: usize = 131_072;
/// Most languages one branding loads.
pub const MAX_LANGUAGES: usize = 50;
/// Longest text of one string.
pub const MAX_STRING_CHARS: usize = 1024;

/// The colours the page uses, with their defaults.
pub const COLORS: &[(&str, &str)] = &[
    ("primary", "#0a66c2"),
    ("button_text", "#ffffff"),
    ("background", "#ffffff"),
    ("text", "#1b1f24"),
    ("error", "#b00020"),
    ("link", "#0a66c2"),
];

/// Cognito's asset categories.
pub const ASSET_CATEGORIES: &[&str] = &[
    "FAVICON_ICO",
    "FAVICON_SVG",
    "EMAIL_GRAPHIC",
    "SMS_GRAPHIC",
    "AUTH_APP_GRAPHIC",
    "PASSWORD_GRAPHIC",
    "PASSKEY_GRAPHIC",
    "PAGE_HEADER_LOGO",
    "PAGE_HEADER_BACKGROUND",
    "PAGE_FOOTER_LOGO",
    "PAGE_FOOTER_BACKGROUND",
    "PAGE_BACKGROUND",
    "FORM_BACKGROUND",
    "FORM_LOGO",
    "IDP_BUTTON_ICON",
];

/// The classic hosted UI's customizable classes (Cognito's list).
pub const CSS_CLASSES: &[&str] = &[
    "background-customizable",
    "banner-customizable",
    "errorMessage-customizable",
    "idpButton-customizable",
    "idpButton-customizable:hover",
    "idpDescription-customizable",
    "inputField-customizable",
    "inputField-customizable:focus",
    "label-customizable",
    "legalText-customizable",
    "logo-customizable",
    "passwordCheck-notValid-customizable",
    "passwordCheck-valid-customizable",
    "redirect-customizable",
    "socialButton-customizable",
    "submitButton-customizable",
    "submitButton-customizable:hover",
    "textDescription-customizable",
];

/// CSS properties the classic customization may set.
const CSS_PROPERTIES: &[&str] = &[
    "background",
    "background-color",
    "border",
    "border-bottom",
    "border-color",
    "border-left",
    "border-radius",
    "border-right",
    "border-style",
    "border-top",
    "border-width",
    "box-shadow",
    "color",
    "display",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "height",
    "letter-spacing",
    "line-height",
    "margin",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "margin-top",
    "max-height",
    "max-width",
    "min-height",
    "min-width",
    "opacity",
    "padding",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "padding-top",
    "text-align",
    "text-decoration",
    "text-transform",
    "width",
];

/// One image of a branding (Cognito's `AssetType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandingAsset {
    /// `Category`: where it goes (`FORM_LOGO`, ...).
    pub category: String,
    /// `ColorMode`: `LIGHT`, `DARK` or `DYNAMIC`.
    pub color_mode: String,
    /// `Extension`: `PNG`, `JPEG`, `SVG`, `ICO` or `WEBP`.
    pub extension: String,
    /// The image.
    pub bytes: Vec<u8>,
}

impl BrandingAsset {
    /// Its media type.
    pub fn media_type(&self) -> &'static str {
        match self.extension.as_str() {
            "PNG" => "image/png",
            "JPEG" => "image/jpeg",
            "SVG" => "image/svg+xml",
            "ICO" => "image/x-icon",
            _ => "image/webp",
        }
    }
}

/// A branding as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    /// The user pool.
    pub pool_id: String,
    /// `ManagedLoginBrandingId`.
    pub branding_id: String,
    /// The app client it dresses; empty for the pool's default.
    pub client_id: String,
    /// `UseCognitoProvidedValues`: ignore settings and assets and show
    /// the built-in look.
    pub use_provided_values: bool,
    /// The settings document (validated JSON text; `{}` for none).
    pub settings: String,
    /// Image assets.
    pub assets: Vec<BrandingAsset>,
    /// The classic `SetUICustomization` CSS, as [`sanitize_css`] wrote it.
    pub css: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the latest change.
    pub modified_at: i64,
}

/// What the page takes from a branding's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrandingSettings {
    /// Colour name -> hex value.
    pub colors: BTreeMap<String, String>,
    /// Language tag -> string key -> text.
    pub languages: BTreeMap<String, BTreeMap<String, String>>,
}

impl Branding {
    /// The settings, parsed (they were validated when stored).
    pub fn parsed_settings(&self) -> BrandingSettings {
        parse_settings(&self.settings, &|_| true).unwrap_or_default()
    }

    /// The image of `category` to show, if any.
    pub fn asset(&self, category: &str) -> Option<&BrandingAsset> {
        self.assets
            .iter()
            .find(|a| a.category == category && a.color_mode != "DARK")
            .or_else(|| self.assets.iter().find(|a| a.category == category))
    }

    /// Checks every field; deterministic, so `apply` runs it on a peer's
    /// entry too. `known_key` says whether a string key exists.
    pub fn validate(&self, known_key: &dyn Fn(&str) -> bool) -> Result<(), ValidationError> {
        if self.settings.len() > MAX_SETTINGS_BYTES {
            return Err(ValidationError::new(
                "settings",
                format!("at most {MAX_SETTINGS_BYTES} bytes"),
            ));
        }
        parse_settings(&self.settings, known_key)?;
        if self.assets.len() > MAX_ASSETS {
            return Err(ValidationError::new("assets", format!("at most {MAX_ASSETS}")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.assets {
            if !ASSET_CATEGORIES.contains(&a.category.as_str()) {
                return Err(ValidationError::new(
                    "assets.category",
                    format!("{:?}: one of {}", a.category, ASSET_CATEGORIES.join(", ")),
                ));
            }
            if !["LIGHT", "DARK", "DYNAMIC"].contains(&a.color_mode.as_str()) {
                return Err(ValidationError::new(
                    "assets.color_mode",
                    format!("{:?}: LIGHT, DARK or DYNAMIC", a.color_mode),
                ));
            }
            if !["PNG", "JPEG", "SVG", "ICO", "WEBP"].contains(&a.extension.as_str()) {
                return Err(ValidationError::new(
                    "assets.extension",
                    format!("{:?}: PNG, JPEG, SVG, ICO or WEBP", a.extension),
                ));
            }
            if a.bytes.is_empty() || a.bytes.len() > MAX_ASSET_BYTES {
                return Err(ValidationError::new(
                    "assets.bytes",
                    format!("{}: 1 to {MAX_ASSET_BYTES} bytes", a.category),
                ));
            }
            if !seen.insert((a.category.as_str(), a.color_mode.as_str())) {
                return Err(ValidationError::new(
                    "assets",
                    format!("{} {} appears twice", a.category, a.color_mode),
                ));
            }
        }
        if self.css.chars().count() > MAX_CSS_CHARS {
            return Err(ValidationError::new(
                "css",
                format!("at most {MAX_CSS_CHARS} characters"),
            ));
        }
        Ok(())
    }
}

/// Whether `v` is a hex colour.
fn is_hex_color(v: &str) -> bool {
    v.strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 4 | 6 | 8) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Parses and checks a settings document.
pub fn parse_settings(text: &str, known_key: &dyn Fn(&str) -> bool) -> Result<BrandingSettings, ValidationError> {
    let bad = |m: String| ValidationError::new("settings", m);
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(bad("a JSON object: {\"colors\": {...}, \"languages\": {...}}".into()));
    };
    let mut out = BrandingSettings::default();
    for (k, v) in &doc {
        match (k.as_str(), v) {
            ("colors", Value::Object(colors)) => {
                for (name, value) in colors {
                    if !COLORS.iter().any(|(n, _)| n == name) {
                        let names: Vec<_> = COLORS.iter().map(|(n, _)| *n).collect();
                        return Err(bad(format!(
                            "colors.{name}: not a colour of the page ({})",
                            names.join(", ")
                        )));
                    }
                    match value.as_str() {
                        Some(hex) if is_hex_color(hex) => {
                            out.colors.insert(name.clone(), hex.to_string());
                        }
                        _ => return Err(bad(format!("colors.{name}: a hex colour such as \"#0a66c2\""))),
                    }
                }
            }
            ("languages", Value::Object(langs)) => {
                if langs.len() > MAX_LANGUAGES {
                    return Err(bad(format!("languages: at most {MAX_LANGUAGES}")));
                }
                for (tag, strings) in langs {
                    if !is_language_tag(tag) {
                        return Err(bad(format!(
                            "languages.{tag}: a language tag such as \"de\" or \"pt-BR\""
                        )));
                    }
                    let Value::Object(strings) = strings else {
                        return Err(bad(format!("languages.{tag}: an object of string key -> text")));
                    };
                    let mut table = BTreeMap::new();
                    for (key, text) in strings {
                        if !known_key(key) {
                            return Err(bad(format!(
                                "languages.{tag}.{key}: not a string of the page (see the README's list of keys)"
                            )));
                        }
                        let Some(text) = text.as_str() else {
                            return Err(bad(format!("languages.{tag}.{key}: a string")));
                        };
                        if text.chars().count() > MAX_STRING_CHARS || text.chars().any(|c| c.is_control() && c != '\n')
                        {
                            return Err(bad(format!(
                                "languages.{tag}.{key}: at most {MAX_STRING_CHARS} characters, no control characters"
                            )));
                        }
                        table.insert(key.clone(), text.to_string());
                    }
                    out.languages.insert(tag.clone(), table);
                }
            }
            ("colors" | "languages", _) => return Err(bad(format!("{k}: an object"))),
            _ => {
                return Err(bad(format!(
                    "{k:?}: unknown setting; Tessera knows colors and languages"
                )))
            }
        }
    }
    Ok(out)
}

/// Whether `tag` looks like a BCP 47 language tag (`de`, `pt-BR`,
/// `zh-Hant`): 2 to 35 letters, digits and `-`, starting with a letter.
pub fn is_language_tag(tag: &str) -> bool {
    (2..=35).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Parses Cognito's classic CSS and writes it back in a fixed, safe form:
/// only rules whose selector is one of [`CSS_CLASSES`] (as `.class`), only
/// properties of a fixed list, and values of letters, digits, spaces and
/// `# % . , ( ) - ' "` with no `url(`, `expression(`, `@`, `\\`, `<`, `>`,
/// `{`, `}`, `;` or `/*`. Anything else is refused with the reason, as
/// Cognito refuses CSS it does not accept.
pub fn sanitize_css(css: &str) -> Result<String, ValidationError> {
    let bad = |m: String| ValidationError::new("css", m);
    if css.chars().count() > MAX_CSS_CHARS {
        return Err(bad(format!("at most {MAX_CSS_CHARS} characters")));
    }
    if css.contains("/*") || css.contains('\\') || css.contains('<') || css.contains('@') {
        return Err(bad("comments, escapes, at-rules and '<' are not accepted".into()));
    }
    let mut out = String::new();
    let mut rest = css.trim();
    while !rest.is_empty() {
        let open = rest.find('{').ok_or_else(|| bad("a rule without '{'".into()))?;
        let close = rest.find('}').ok_or_else(|| bad("a rule without '}'".into()))?;
        if close < open {
            return Err(bad("unbalanced '}'".into()));
        }
        let selector = rest[..open].trim();
        let body = &rest[open + 1..close];
        if body.contains('{') {
            return Err(bad("nested rules are not accepted".into()));
        }
        let class = selector
            .strip_prefix('.')
            .filter(|c| CSS_CLASSES.contains(c))
            .ok_or_else(|| {
                bad(format!(
                    "selector {selector:?}: only Cognito's classes (.{}) can be customized",
                    CSS_CLASSES.join(", .")
                ))
            })?;
        out.push('.');
        out.push_str(class);
        out.push('{');
        for decl in body.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let (prop, value) = decl
                .split_once(':')
                .ok_or_else(|| bad(format!("{decl:?}: property: value")))?;
            let (prop, value) = (prop.trim().to_ascii_lowercase(), value.trim());
            if !CSS_PROPERTIES.contains(&prop.as_str()) {
                return Err(bad(format!("property {prop:?} of .{class} cannot be customized")));
            }
            let lower = value.to_ascii_lowercase();
            let safe = !value.is_empty()
                && value.len() <= 200
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " #%.,()-'\"!".contains(c))
                && !lower.contains("url(")
                && !lower.contains("expression(")
                && !lower.contains("image(")
                && !lower.contains("image-set(");
            if !safe {
                return Err(bad(format!("{prop}: {value:?} is not an accepted value")));
            }
            out.push_str(&prop);
            out.push(':');
            out.push_str(value);
            out.push(';');
        }
        out.push('}');
        rest = rest[close + 1..].trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(_: &str) -> bool {
        true
    }

    #[test]
    fn css_is_rewritten_or_refused() {
        let ok = sanitize_css(".submitButton-customizable { background-color: #ff0000; font-size: 14px }").unwrap();
        assert_eq!(
            ok,
            ".submitButton-customizable{background-color:#ff0000;font-size:14px;}"
        );
        for attack in [
            ".logo-customizable { background: url(https://evil.example/x) }",
            "</style><script>alert(1)</script>",
            ".label-customizable { color: red } body { display: none }",
            "@import 'https://evil.example/x.css';",
            ".label-customizable { color: red; } } .x {",
            ".label-customizable { color: expression(alert(1)) }",
            ".label-customizable { position: fixed }",
            ".label-customizable { color: \\72 ed }",
            ".label-customizable { color: red /* } */ }",
        ] {
            assert!(sanitize_css(attack).is_err(), "accepted {attack:?}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let s = parse_settings(
            r##"{"colors":{"primary":"#123456"},"languages":{"de":{"signin.title":"Anmelden"}}}"##,
            &any,
        )
        .unwrap();
        assert_eq!(s.colors["primary"], "#123456");
        assert_eq!(s.languages["de"]["signin.title"], "Anmelden");
        for bad in [
            r#"{"colors":{"primary":"red; background:url(x)"}}"#,
            r##"{"colors":{"favourite":"#fff"}}"##,
            r#"{"languages":{"<x>":{}}}"#,
            r#"{"fonts":{}}"#,
            "[]",
        ] {
            assert!(parse_settings(bad, &any).is_err(), "accepted {bad}");
        }
        assert!(parse_settings(r#"{"languages":{"de":{"no.such.key":"x"}}}"#, &|k| k == "signin.title").is_err());
    }
}

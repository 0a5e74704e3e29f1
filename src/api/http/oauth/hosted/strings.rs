//! The choice of language for one browser: the app's `lang` parameter,
//! else the browser's `Accept-Language`, among the languages the pool's
//! branding loaded (`model::branding`), else English
//! (`model::page_strings`).

use crate::model::branding::is_language_tag;
pub use crate::model::page_strings::{english, is_key, ENGLISH};

/// The language to show: the `lang` parameter if the pool has it, else
/// the first of `Accept-Language` (by quality) that it has, matching a
/// region-less tag too (`de-CH` finds `de`), else English. `available`
/// are the loaded languages; English is always available.
pub fn choose(lang_param: Option<&str>, accept_language: Option<&str>, available: &[String]) -> String {
    let has = |tag: &str| -> Option<String> {
        if tag.eq_ignore_ascii_case("en") {
            return Some("en".to_string());
        }
        available.iter().find(|a| a.eq_ignore_ascii_case(tag)).cloned()
    };
    let find =
        |tag: &str| -> Option<String> { has(tag).or_else(|| tag.split_once('-').and_then(|(base, _)| has(base))) };
    if let Some(found) = lang_param.filter(|l| is_language_tag(l)).and_then(find) {
        return found;
    }
    let mut ranked: Vec<(u32, &str)> = accept_language
        .unwrap_or("")
        .split(',')
        .take(20)
        .filter_map(|part| {
            let mut it = part.trim().split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (is_language_tag(tag) && q > 0.0).then_some(((q * 1000.0) as u32, tag))
        })
        .collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    ranked
        .into_iter()
        .find_map(|(_, tag)| find(tag))
        .unwrap_or_else(|| "en".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_follows_param_then_header_then_english() {
        let avail = vec!["de".to_string(), "pt-BR".to_string()];
        assert_eq!(choose(Some("de"), None, &avail), "de");
        assert_eq!(choose(Some("fr"), Some("pt-BR,de;q=0.5"), &avail), "pt-BR");
        assert_eq!(choose(None, Some("fr;q=0.9, de-CH;q=0.8"), &avail), "de");
        assert_eq!(choose(None, Some("de;q=0, fr"), &avail), "en");
        assert_eq!(choose(Some("<script>"), None, &avail), "en");
        assert_eq!(choose(None, None, &avail), "en");
    }
}

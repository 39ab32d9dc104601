//! Where a request to the mock upstream is aimed: the caller the gateway
//! names in its headers, and the path in v1 words with the version noted.

use axum::http::HeaderMap;

use super::Api;

/// Who is calling, as the gateway told us in its `x-gateway-*` headers.
pub(super) struct Caller {
    pub(super) slug: String,
    pub(super) role: Option<String>,
    pub(super) is_addon: bool,
}

/// A path with the version prefix removed and v1 words throughout.
pub(super) struct Target {
    pub(super) api: Api,
    /// The non-empty segments.
    pub(super) segments: Vec<String>,
    /// Whether the path had no empty segment (no `//`, no trailing `/`);
    /// only such a path can name an action route.
    pub(super) exact: bool,
}

impl Caller {
    /// The caller named by `x-gateway-addon`, `x-gateway-caller` and
    /// `x-gateway-role`; `self_unknown` when no add-on is named.
    pub(super) fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let slug = text("x-gateway-addon");
        let is_addon = text("x-gateway-caller").map_or(slug.is_some(), |kind| kind == "addon");
        Self {
            slug: slug.unwrap_or_else(|| "self_unknown".to_owned()),
            role: text("x-gateway-role"),
            is_addon,
        }
    }
}

impl Target {
    /// `None` when the path uses the other generation's word for add-ons.
    pub(super) fn parse(path: &str, caller: &Caller) -> Option<Self> {
        let (api, rest) = match path.strip_prefix("/v2") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => (Api::V2, rest),
            _ => (Api::V1, path),
        };
        let exact = rest.split('/').skip(1).all(|segment| !segment.is_empty());
        let mut segments: Vec<String> = rest
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_owned)
            .collect();

        rename_words(api, &mut segments)?;
        if let [area, slug, ..] = segments.as_mut_slice() {
            if area == "addons" && slug == "self" {
                slug.clone_from(&caller.slug);
            }
        }
        Some(Self {
            api,
            segments,
            exact,
        })
    }
}

/// Rewrites `apps` (v2) and `homeassistant` to the v1 words; `None` for the
/// word of the other generation, which the real API would not know either.
fn rename_words(api: Api, segments: &mut [String]) -> Option<()> {
    let at = match segments.first().map(String::as_str) {
        Some("store") => 1,
        Some("homeassistant") => {
            segments[0] = "core".to_owned();
            return Some(());
        }
        _ => 0,
    };
    match segments.get(at).map(String::as_str) {
        Some(word) if word == api.foreign_word() => None,
        Some(word) if word == api.addons_word() => {
            segments[at] = "addons".to_owned();
            Some(())
        }
        _ => Some(()),
    }
}

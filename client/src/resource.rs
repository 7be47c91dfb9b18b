//! `ResourceInfo`: the names and scope of a kind, taken from `pacer_schemas::Resource`, and the
//! table of known kinds that generic tools (`pacer get RESOURCE`) resolve names against —
//! plural, singular, short name or kind, optionally suffixed with the group.

use pacer_schemas::{App, AppVersion, Deployment, Event, Instance, Lease, Node, Offer, Resource};

/// What the client needs to address a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// `App`.
    pub kind: &'static str,
    /// `AppList`.
    pub list_kind: &'static str,
    /// `apps`.
    pub plural: &'static str,
    /// `app`.
    pub singular: &'static str,
    /// `["ap"]`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// `pacer.dev`.
    pub group: &'static str,
    /// `v1`.
    pub version: &'static str,
    /// `pacer.dev/v1`.
    pub api_version: &'static str,
}

/// Every kind `pacer.dev/v1` serves, in the order `pacer get all`-style output lists them.
pub static KNOWN_RESOURCES: [ResourceInfo; 9] = [
    ResourceInfo::of::<App>(),
    ResourceInfo::of::<AppVersion>(),
    ResourceInfo::of::<Instance>(),
    ResourceInfo::of::<Deployment>(),
    ResourceInfo::of::<Node>(),
    ResourceInfo::of::<Offer>(),
    ResourceInfo::of::<Event>(),
    ResourceInfo::of::<Lease>(),
    ResourceInfo::of::<pacer_schemas::framework::Framework>(),
];

impl ResourceInfo {
    /// The info of kind `K`.
    pub const fn of<K: Resource>() -> Self {
        Self {
            kind: K::KIND,
            list_kind: K::LIST_KIND,
            plural: K::PLURAL,
            singular: K::SINGULAR,
            short_names: K::SHORT_NAMES,
            namespaced: K::NAMESPACED,
            group: K::GROUP,
            version: K::VERSION,
            api_version: K::API_VERSION,
        }
    }

    /// Resolves a name as kubectl does: plural (`apps`), singular (`app`), short name (`ap`)
    /// or kind (`App`), case-insensitively, optionally followed by `.pacer.dev`.
    pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
        let lower = name.trim().to_ascii_lowercase();
        KNOWN_RESOURCES.iter().find(|info| {
            let bare = lower
                .strip_suffix(info.group)
                .and_then(|rest| rest.strip_suffix('.'))
                .unwrap_or(&lower);
            bare == info.plural
                || bare == info.singular
                || bare == info.kind.to_ascii_lowercase()
                || info.short_names.contains(&bare)
        })
    }

    /// The kind with this `apiVersion` and `kind`, exactly.
    pub fn for_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
        KNOWN_RESOURCES
            .iter()
            .find(|info| info.api_version == api_version && info.kind == kind)
    }

    /// `apps.pacer.dev`, as Kubernetes names a resource in messages.
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// `app.pacer.dev`, as kubectl prints an object's type (`app.pacer.dev/web created`).
    pub fn type_name(&self) -> String {
        format!("{}.{}", self.singular, self.group)
    }

    /// Every name [`ResourceInfo::resolve`] accepts, for help and error messages.
    pub fn all_names() -> Vec<String> {
        KNOWN_RESOURCES
            .iter()
            .map(|info| {
                let mut names = vec![info.plural.to_owned(), info.singular.to_owned()];
                names.extend(info.short_names.iter().map(|short| (*short).to_owned()));
                names.join("|")
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_kubectl() {
        for name in [
            "apps",
            "app",
            "ap",
            "App",
            "APPS",
            "apps.pacer.dev",
            "app.pacer.dev",
        ] {
            assert_eq!(ResourceInfo::resolve(name).unwrap().kind, "App", "{name}");
        }
        assert_eq!(ResourceInfo::resolve("no").unwrap().kind, "Node");
        assert_eq!(ResourceInfo::resolve("inst").unwrap().kind, "Instance");
        assert_eq!(ResourceInfo::resolve("ev").unwrap().kind, "Event");
        assert_eq!(ResourceInfo::resolve("deploy").unwrap().kind, "Deployment");
        assert!(ResourceInfo::resolve("pods").is_none());
        assert!(ResourceInfo::resolve("apps.example.com").is_none());
        assert!(!ResourceInfo::resolve("nodes").unwrap().namespaced);
        assert_eq!(
            ResourceInfo::for_kind("pacer.dev/v1", "App")
                .unwrap()
                .type_name(),
            "app.pacer.dev"
        );
        assert!(ResourceInfo::for_kind("pacer.dev/v2", "App").is_none());
    }
}

//! Permissions and roles: what a key may do.
//!
//! The core API's twelve permissions and the four roles keep the names of the
//! original Buntime; plugin routes add `plugin:<base>:read` (GET, HEAD,
//! OPTIONS under `/_/<base>/`) and `plugin:<base>:write` (every other
//! method), with `*` for every plugin.
//!
//! | role | permissions |
//! |---|---|
//! | `admin` | all |
//! | `editor` | `apps:*`, `plugins:*`, `workers:*`, `plugin:*:read`, `plugin:*:write` |
//! | `viewer` | `apps:read`, `plugins:read`, `workers:read`, `keys:read`, `plugin:*:read` |
//! | `custom` | the list given when the key was created |

use std::fmt;

/// A permission of the core API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// List apps.
    AppsRead,
    /// Install apps.
    AppsInstall,
    /// Remove apps.
    AppsRemove,
    /// List plugins.
    PluginsRead,
    /// Install plugins.
    PluginsInstall,
    /// Remove plugins.
    PluginsRemove,
    /// Reload, enable and disable plugins.
    PluginsConfig,
    /// List API keys.
    KeysRead,
    /// Create API keys.
    KeysCreate,
    /// Revoke API keys.
    KeysRevoke,
    /// Read pool metrics and statistics.
    WorkersRead,
    /// Restart app instances.
    WorkersRestart,
}

impl Permission {
    /// Every permission, in the order listings show them.
    pub const ALL: [Permission; 12] = [
        Self::AppsRead,
        Self::AppsInstall,
        Self::AppsRemove,
        Self::PluginsRead,
        Self::PluginsInstall,
        Self::PluginsRemove,
        Self::PluginsConfig,
        Self::KeysRead,
        Self::KeysCreate,
        Self::KeysRevoke,
        Self::WorkersRead,
        Self::WorkersRestart,
    ];

    /// Its name, e.g. `apps:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppsRead => "apps:read",
            Self::AppsInstall => "apps:install",
            Self::AppsRemove => "apps:remove",
            Self::PluginsRead => "plugins:read",
            Self::PluginsInstall => "plugins:install",
            Self::PluginsRemove => "plugins:remove",
            Self::PluginsConfig => "plugins:config",
            Self::KeysRead => "keys:read",
            Self::KeysCreate => "keys:create",
            Self::KeysRevoke => "keys:revoke",
            Self::WorkersRead => "workers:read",
            Self::WorkersRestart => "workers:restart",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request needs, named as a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed<'a> {
    /// A core API permission.
    Core(Permission),
    /// A plugin route under `/_/<base>/`: reading (GET, HEAD, OPTIONS) or
    /// writing (any other method).
    PluginRoute {
        /// The plugin's base.
        base: &'a str,
        /// Whether the method writes.
        write: bool,
    },
}

impl fmt::Display for Needed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Core(p) => p.fmt(f),
            Self::PluginRoute { base, write } => {
                write!(f, "plugin:{base}:{}", if *write { "write" } else { "read" })
            }
        }
    }
}

/// The bits of `permissions`.
fn bits<'a>(permissions: impl IntoIterator<Item = &'a Permission>) -> u16 {
    permissions.into_iter().fold(0, |b, p| b | p.bit())
}

/// A role a key is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Apps, plugins, workers and every plugin route; not keys.
    Editor,
    /// Reading.
    Viewer,
    /// An explicit list.
    Custom,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Self::Admin, Self::Editor, Self::Viewer, Self::Custom];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
            Self::Custom => "custom",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A set of permissions: a role's, or a custom list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    core: u16,
    /// `(base or "*", write)`.
    plugin_routes: Vec<(String, bool)>,
}

impl Permissions {
    /// Every permission (the master key, an admin key, a local client
    /// while no key is configured).
    pub fn all() -> Self {
        Self::of_role(Role::Admin)
    }

    /// The permissions of `role` (none for `custom`, whose list is its own).
    pub fn of_role(role: Role) -> Self {
        use Permission::*;
        let (core, read, write) = match role {
            Role::Admin => (bits(&Permission::ALL), true, true),
            // Everything but the keys.
            Role::Editor => (
                bits(
                    Permission::ALL
                        .iter()
                        .filter(|p| !matches!(p, KeysRead | KeysCreate | KeysRevoke)),
                ),
                true,
                true,
            ),
            Role::Viewer => (
                bits(&[AppsRead, PluginsRead, WorkersRead, KeysRead]),
                true,
                false,
            ),
            Role::Custom => (0, false, false),
        };
        let mut plugin_routes = Vec::new();
        if read {
            plugin_routes.push(("*".to_owned(), false));
        }
        if write {
            plugin_routes.push(("*".to_owned(), true));
        }
        Self {
            core,
            plugin_routes,
        }
    }

    /// Parses a custom list of permission names; the error names the
    /// first one that is not a permission.
    ///
    /// ```
    /// use buntime::access::{Needed, Permission, Permissions};
    /// let p = Permissions::parse(&["apps:read".into(), "plugin:keyval:read".into()]).unwrap();
    /// assert!(p.allows(Needed::Core(Permission::AppsRead)));
    /// assert!(p.allows(Needed::PluginRoute { base: "keyval", write: false }));
    /// assert!(!p.allows(Needed::PluginRoute { base: "keyval", write: true }));
    /// assert!(Permissions::parse(&["apps:delete".into()]).is_err());
    /// ```
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let mut out = Self::default();
        for name in names {
            if let Some(p) = Permission::ALL.iter().find(|p| p.as_str() == name) {
                out.core |= p.bit();
                continue;
            }
            let route = name.strip_prefix("plugin:").and_then(|rest| {
                let (base, access) = rest.rsplit_once(':')?;
                let write = match access {
                    "read" => false,
                    "write" => true,
                    _ => return None,
                };
                let valid = base == "*"
                    || (!base.is_empty()
                        && base
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
                valid.then(|| (base.to_owned(), write))
            });
            match route {
                Some(r) => {
                    if !out.plugin_routes.contains(&r) {
                        out.plugin_routes.push(r);
                    }
                }
                None => {
                    return Err(format!(
                        "`{name}` is not a permission: use one of {} or plugin:<base>:read, plugin:<base>:write (`*` for every plugin)",
                        Permission::ALL.map(Permission::as_str).join(", ")
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Whether the set holds `needed`.
    pub fn allows(&self, needed: Needed<'_>) -> bool {
        match needed {
            Needed::Core(p) => self.core & p.bit() != 0,
            Needed::PluginRoute { base, write } => self
                .plugin_routes
                .iter()
                .any(|(b, w)| *w == write && (b == "*" || b == base)),
        }
    }

    /// Whether every permission of `other` is in this set (a key may only
    /// create keys that can do no more than itself).
    pub fn covers(&self, other: &Permissions) -> bool {
        other.core & !self.core == 0
            && other.plugin_routes.iter().all(|(base, write)| {
                self.allows(Needed::PluginRoute {
                    base,
                    write: *write,
                })
            })
    }

    /// The names, as listings show them.
    pub fn names(&self) -> Vec<String> {
        Permission::ALL
            .iter()
            .filter(|p| self.core & p.bit() != 0)
            .map(|p| p.as_str().to_owned())
            .chain(self.plugin_routes.iter().map(|(base, write)| {
                Needed::PluginRoute {
                    base,
                    write: *write,
                }
                .to_string()
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_original_map() {
        let viewer = Permissions::of_role(Role::Viewer);
        assert_eq!(
            viewer.names(),
            [
                "apps:read",
                "plugins:read",
                "keys:read",
                "workers:read",
                "plugin:*:read"
            ]
        );
        let editor = Permissions::of_role(Role::Editor);
        assert!(!editor.allows(Needed::Core(Permission::KeysRead)));
        assert!(editor.allows(Needed::Core(Permission::PluginsConfig)));
        assert!(Permissions::all().covers(&editor));
        assert!(editor.covers(&viewer.clone().without_keys()));
        assert!(!editor.covers(&viewer));
        assert!(!viewer.covers(&editor));
    }

    impl Permissions {
        fn without_keys(mut self) -> Self {
            self.core &= !Permission::KeysRead.bit();
            self
        }
    }

    #[test]
    fn custom_lists_are_checked() {
        let p = Permissions::parse(&["plugin:*:write".into()]).expect("valid");
        assert!(p.allows(Needed::PluginRoute {
            base: "kv",
            write: true
        }));
        assert!(!p.allows(Needed::PluginRoute {
            base: "kv",
            write: false
        }));
        for bad in [
            "plugin:a/b:read",
            "plugin::read",
            "plugin:x:delete",
            "admin",
        ] {
            let e = Permissions::parse(&[bad.into()]).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }
}

//! Roles and what each may do.
//!
//! | role | reads (`Get`, status, ring, endpoints, streams, info) | writes (`Put`, `Delete`) | cluster commands and users |
//! |---|---|---|---|
//! | `read-only` | yes | no | no |
//! | `read-write` | yes | yes | no |
//! | `admin` | yes | yes | yes |
//!
//! Every gRPC method needs one [`Permission`]; [`permission_for`] maps its
//! path. A method this table does not know needs `Admin`, so a method added
//! later is closed until someone decides otherwise.

use std::fmt;
use std::str::FromStr;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
    Admin,
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ReadOnly,
    ReadWrite,
    Admin,
}

impl Role {
    /// The strongest permission the role holds.
    fn grants(self) -> Permission {
        match self {
            Role::ReadOnly => Permission::Read,
            Role::ReadWrite => Permission::Write,
            Role::Admin => Permission::Admin,
        }
    }

    /// Whether the role may do what `needed` names.
    pub fn allows(self, needed: Permission) -> bool {
        needed <= self.grants()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "read-only" | "readonly" => Ok(Role::ReadOnly),
            "read-write" | "readwrite" => Ok(Role::ReadWrite),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role {s:?} (expected read-only, read-write or admin)"
            )),
        }
    }
}

/// The permission a gRPC method (`/package.Service/Method`) needs.
pub fn permission_for(path: &str) -> Permission {
    let method = path.trim_start_matches('/');
    match method {
        "ringkv.v1.KeyValue/Get"
        | "ringkv.v1.KeyValue/Query"
        | "ringkv.v1.KeyValue/Count"
        | "ringkv.v1.Admin/NodeInfo"
        | "ringkv.v1.Admin/ClusterStatus"
        | "ringkv.v1.Admin/Ring"
        | "ringkv.v1.Admin/GetEndpoints"
        | "ringkv.v1.Admin/Streams"
        | "ringkv.v1.Admin/NodeStats"
        // Users change their own password; the handler checks whose.
        | "ringkv.v1.Admin/UserPassword" => Permission::Read,
        "ringkv.v1.KeyValue/Put" | "ringkv.v1.KeyValue/Delete" | "ringkv.v1.KeyValue/Batch" => {
            Permission::Write
        }
        _ => Permission::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_the_table_says() {
        let table = [
            ("/ringkv.v1.KeyValue/Get", [true, true, true]),
            ("/ringkv.v1.KeyValue/Query", [true, true, true]),
            ("/ringkv.v1.KeyValue/Count", [true, true, true]),
            ("/ringkv.v1.Admin/Ring", [true, true, true]),
            ("/ringkv.v1.Admin/NodeStats", [true, true, true]),
            ("/ringkv.v1.KeyValue/Put", [false, true, true]),
            ("/ringkv.v1.KeyValue/Delete", [false, true, true]),
            ("/ringkv.v1.KeyValue/Batch", [false, true, true]),
            ("/ringkv.v1.Admin/Repair", [false, false, true]),
            ("/ringkv.v1.Admin/Decommission", [false, false, true]),
            ("/ringkv.v1.Admin/UserAdd", [false, false, true]),
            ("/ringkv.v1.Admin/SomethingNew", [false, false, true]),
        ];
        for (path, allowed) in table {
            for (role, allow) in [Role::ReadOnly, Role::ReadWrite, Role::Admin]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(role.allows(permission_for(path)), allow, "{role} on {path}");
            }
        }
    }

    #[test]
    fn role_names() {
        for role in [Role::ReadOnly, Role::ReadWrite, Role::Admin] {
            assert_eq!(role.as_str().parse(), Ok(role));
        }
        assert_eq!("READ_WRITE".parse(), Ok(Role::ReadWrite));
        assert!("root".parse::<Role>().is_err());
    }
}

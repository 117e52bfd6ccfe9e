//! Authentication and roles on the client APIs.
//!
//! With `authentication = true`, every client request carries a user name
//! and password; users are stored in the cluster's own keyspace with
//! Argon2id password hashes ([`users`]), each has a role ([`role`]), and a
//! layer around the gRPC services checks both ([`check`]). The same
//! [`Authenticator`] serves every client front door.
//!
//! The first admin comes from `auth_admin_password`: a node started with
//! it creates the user `admin` when no such user exists.

pub mod check;
pub mod role;
pub mod throttle;
pub mod users;

pub use check::{Authenticator, Caller, Refusal, basic_credentials, basic_header};
pub use role::{Permission, Role, permission_for};
pub use users::{UserError, UserRecord, UserStore, is_reserved};

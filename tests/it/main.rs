//! Integration tests: real `ringkv-node` processes on loopback, driven
//! through ringkv-client and the `ringkv` binary. One test binary (modules
//! below) so the workspace links once.

mod clock;
mod cluster;
mod console;
mod convergence;
mod framed;
mod hardening;
mod monitoring;
mod overload;
mod resp;
mod rows;
mod security;
mod shell;
mod single_node;
mod stranger;
mod topology;
mod upgrade;

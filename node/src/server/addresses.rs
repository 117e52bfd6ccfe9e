//! Which addresses this node tells others to use.
//!
//! Nodes gossip the addresses at which they can be reached. They listen on
//! `listen_*`; what they advertise is the `broadcast_address` (an IP or a
//! host name, resolved at start) with the listen ports, or the listen IP
//! itself when no broadcast address is set.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};

use crate::config::Config;

/// The addresses this node advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub gossip: SocketAddr,
}

/// Resolves a host name (or IP) to one IP, IPv4 first.
pub async fn resolve_host(host: &str) -> anyhow::Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .with_context(|| format!("cannot resolve {host:?}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.ip())
        .with_context(|| format!("{host:?} resolves to no address"))
}

/// The advertised addresses for `config`.
pub async fn advertised(config: &Config) -> anyhow::Result<Advertised> {
    let ip = if config.broadcast_address.trim().is_empty() {
        let ip = config.listen_client.ip();
        if ip.is_unspecified() {
            bail!(
                "listen_client is {} (all interfaces): set broadcast_address to the IP or host name other nodes should use",
                config.listen_client
            );
        }
        ip
    } else {
        resolve_host(config.broadcast_address.trim())
            .await
            .context("invalid broadcast_address")?
    };
    Ok(Advertised {
        client: SocketAddr::new(ip, config.listen_client.port()),
        peer: SocketAddr::new(ip, config.listen_peer.port()),
        gossip: SocketAddr::new(ip, config.listen_gossip.port()),
    })
}

/// True when this node is one of `seeds` (or there are none: it starts its
/// own cluster). Seeds that do not resolve are skipped.
pub async fn is_seed(seeds: &[String], gossip: SocketAddr, listen_gossip: SocketAddr) -> bool {
    if seeds.is_empty() {
        return true;
    }
    for seed in seeds {
        let Ok(resolved) = tokio::net::lookup_host(seed.as_str()).await else {
            continue;
        };
        for addr in resolved {
            if addr == gossip || addr == listen_gossip {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advertises_the_listen_ip_or_the_broadcast_address() {
        let mut config = Config::default();
        let ad = advertised(&config).await.expect("loopback");
        assert_eq!(ad.client, "127.0.0.1:7400".parse().expect("addr"));
        assert_eq!(ad.gossip, "127.0.0.1:7402".parse().expect("addr"));
        config.listen_client = "0.0.0.0:7400".parse().expect("addr");
        assert!(
            advertised(&config).await.is_err(),
            "0.0.0.0 needs a broadcast address"
        );
        config.broadcast_address = "10.1.2.3".into();
        assert_eq!(
            advertised(&config).await.expect("ip").peer,
            "10.1.2.3:7401".parse().expect("addr")
        );
        config.broadcast_address = "localhost".into();
        assert!(
            advertised(&config)
                .await
                .expect("name")
                .client
                .ip()
                .is_loopback()
        );
    }

    #[tokio::test]
    async fn seeds() {
        let me: SocketAddr = "127.0.0.1:7402".parse().expect("addr");
        assert!(is_seed(&[], me, me).await);
        assert!(is_seed(&["127.0.0.1:7402".into()], me, me).await);
        assert!(!is_seed(&["127.0.0.2:7402".into()], me, me).await);
    }
}

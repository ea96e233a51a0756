//! Who gets a connection slot: `server.max_connections` in total and
//! `server.max_connections_per_ip` from one address.
//!
//! A permit is taken when the TCP connection is accepted, before any byte is read, and is held
//! by the connection's task until it ends, so a flood of connections from one address costs
//! one refused `accept` each and never reaches the HTTP parser or the TLS handshake.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `server.max_connections` reached.
    Total,
    /// `server.max_connections_per_ip` reached for this address.
    PerIp,
}

/// The connection limits.
#[derive(Debug)]
pub struct Admission {
    total: Arc<Semaphore>,
    per_ip_limit: usize,
    per_ip: DashMap<IpAddr, usize>,
}

/// A connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    _total: OwnedSemaphorePermit,
    ip: Option<(Arc<Admission>, IpAddr)>,
}

impl Admission {
    /// Limits of `total` connections and `per_ip` from one address (0: no per-address limit).
    pub fn new(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total)),
            per_ip_limit: per_ip,
            per_ip: DashMap::new(),
        })
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let total = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        if self.per_ip_limit == 0 {
            return Ok(Permit {
                _total: total,
                ip: None,
            });
        }
        {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip_limit {
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        Ok(Permit {
            _total: total,
            ip: Some((Arc::clone(self), ip)),
        })
    }

    /// Connections currently held from `ip` (when a per-address limit is set).
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).map_or(0, |n| *n)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((admission, ip)) = self.ip.take() {
            // Remove the entry with its last connection, so the map holds only addresses
            // with live connections.
            admission.per_ip.remove_if_mut(&ip, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_address() {
        let a = Admission::new(3, 2);
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = a.admit(x).unwrap();
        let p2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).unwrap_err(), Refused::PerIp);
        let p3 = a.admit(y).unwrap();
        assert_eq!(a.admit(y).unwrap_err(), Refused::Total);
        drop(p1);
        assert_eq!(a.held_by(x), 1);
        let p4 = a.admit(x).unwrap();
        drop((p2, p3, p4));
        assert_eq!(a.held_by(x), 0);
        assert!(a.per_ip.is_empty());
    }
}

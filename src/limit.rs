//! Guards that run before a body is read: client IP, allowlists, rate limits.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::{canonical, contains, RateLimit};

/// The client's address: the socket peer, unless the peer is a trusted proxy; then the
/// right-most address in `X-Forwarded-For` (or `Forwarded`) that is not itself trusted.
/// Headers from untrusted peers are ignored, so they cannot be spoofed.
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: &[&str],
    forwarded: &[&str],
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !contains(trusted, peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = if !forwarded_for.is_empty() {
        forwarded_for
            .iter()
            .flat_map(|h| h.split(','))
            .filter_map(|s| parse_hop(s.trim()))
            .collect()
    } else {
        forwarded
            .iter()
            .flat_map(|h| h.split(','))
            .filter_map(|elem| {
                elem.split(';').find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("for")
                        .then(|| parse_hop(v.trim().trim_matches('"')))?
                })
            })
            .collect()
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = canonical(hop);
        if !contains(trusted, client) {
            break;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

fn quota(r: &RateLimit) -> Quota {
    Quota::per_second(r.per_second).allow_burst(r.burst)
}

/// A token bucket for one source.
pub struct SourceLimiter(DefaultDirectRateLimiter);

impl SourceLimiter {
    pub fn new(r: &RateLimit) -> Self {
        SourceLimiter(RateLimiter::direct(quota(r)))
    }

    /// `Err(wait)` when over the limit.
    pub fn check(&self) -> Result<(), Duration> {
        self.0
            .check()
            .map_err(|n| n.wait_time_from(DefaultClock::default().now()))
    }
}

/// A token bucket per client IP.
pub struct ClientLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl ClientLimiter {
    pub fn new(r: &RateLimit) -> Self {
        ClientLimiter(RateLimiter::keyed(quota(r)))
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.0
            .check_key(&ip)
            .map_err(|n| n.wait_time_from(DefaultClock::default().now()))
    }

    /// Drops the state of clients that are back to a full bucket (bounded memory).
    pub fn shrink(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(n: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second: std::num::NonZeroU32::new(n).expect("n > 0"),
            burst: std::num::NonZeroU32::new(burst).expect("burst > 0"),
        }
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(peer, &["1.1.1.1"], &[], &nets(&["10.0.0.0/8"])),
            peer
        );
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        // the client spoofed 1.1.1.1 in front of its real address 198.51.100.7
        assert_eq!(
            client_ip(peer, &["1.1.1.1, 198.51.100.7", "10.0.0.5"], &[], &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(
                peer,
                &[],
                &["for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=https"],
                &trusted
            ),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // every hop trusted: the left-most one
        assert_eq!(
            client_ip(peer, &["10.9.9.9"], &[], &trusted),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
        // no header: the peer
        assert_eq!(client_ip(peer, &[], &[], &trusted), peer);
        // garbage is skipped
        assert_eq!(
            client_ip(peer, &["junk, 198.51.100.7:1234"], &[], &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn limiter_refuses_past_burst() {
        let l = SourceLimiter::new(&per_second(1, 2));
        assert!(l.check().is_ok());
        assert!(l.check().is_ok());
        let wait = l.check().unwrap_err();
        assert!(wait <= Duration::from_secs(1) && !wait.is_zero());
    }
}

//! Guards that run before a body is read: client IP, allowlists, rate limits.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::{canonical, contains, ForwardedHeader, RateLimit};

/// The client's address: the socket peer, unless the peer is a trusted proxy; then the
/// right-most address of the `header` the proxies are configured to set that is not itself
/// trusted. Headers from untrusted peers are ignored, so they cannot be spoofed, and the other
/// forwarding header is ignored too: a proxy sets one of them and passes the other through as
/// the client wrote it.
///
/// `values` are the header's field values in the order received (several lines join as a
/// list). The walk goes right to left and stops at the first hop that does not parse (an
/// obfuscated `Forwarded` identifier, `unknown`, garbage): everything left of it was written
/// by someone we cannot vouch for, so the client is the last address we could trust, the
/// unparseable hop's right neighbour (a trusted proxy, or the peer itself).
pub fn client_ip(
    peer: IpAddr,
    values: &[impl AsRef<str>],
    header: ForwardedHeader,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !contains(trusted, peer) {
        return peer;
    }
    let hops = values.iter().flat_map(|v| v.as_ref().split(','));
    let mut client = peer;
    for hop in hops.rev() {
        let parsed = match header {
            ForwardedHeader::XForwardedFor => parse_hop(hop.trim()),
            ForwardedHeader::Forwarded => forwarded_for(hop),
        };
        let Some(ip) = parsed else { break };
        client = canonical(ip);
        if !contains(trusted, client) {
            break;
        }
    }
    client
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239), when it is an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_hop(v.trim().trim_matches('"')))?
    })
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `[::1]`, `::1`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest.split_once(']')?;
        return (port.is_empty() || port.starts_with(':'))
            .then(|| ip.parse().ok())
            .flatten();
    }
    let (ip, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The rate-limit bucket of a client: its address, or for IPv6 its /64, which is what one
/// subscriber or host usually gets (an attacker rotating addresses inside it stays one client).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

fn quota(r: &RateLimit) -> Quota {
    Quota::per_second(r.per_second).allow_burst(r.burst)
}

/// A token bucket for one source, spent only by requests that passed verification.
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

/// A token bucket per client IP (per /64 for IPv6), checked before the body is read.
pub struct ClientLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl ClientLimiter {
    pub fn new(r: &RateLimit) -> Self {
        ClientLimiter(RateLimiter::keyed(quota(r)))
    }

    /// `Err(wait)` when the client (its /64 for IPv6, see [`client_key`]) is over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.0
            .check_key(&client_key(ip))
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

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let peer = ip("203.0.113.9");
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(peer, &["1.1.1.1"], XFF, &trusted), peer);
        assert_eq!(client_ip(peer, &["for=1.1.1.1"], FWD, &trusted), peer);
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let peer = ip("10.0.0.2");
        let trusted = nets(&["10.0.0.0/8"]);
        // the client spoofed 1.1.1.1 in front of its real address 198.51.100.7
        assert_eq!(
            client_ip(peer, &["1.1.1.1, 198.51.100.7", "10.0.0.5"], XFF, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(
                peer,
                &["for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=https"],
                FWD,
                &trusted
            ),
            ip("2001:db8::1")
        );
        // every hop trusted: the left-most one
        assert_eq!(
            client_ip(peer, &["10.9.9.9"], XFF, &trusted),
            ip("10.9.9.9")
        );
        // no header: the peer
        assert_eq!(client_ip(peer, &[] as &[&str], XFF, &trusted), peer);
        // ports are dropped
        assert_eq!(
            client_ip(peer, &["198.51.100.7:1234"], XFF, &trusted),
            ip("198.51.100.7")
        );
        // mapped addresses compare as IPv4
        assert_eq!(
            client_ip(peer, &["::ffff:198.51.100.7"], XFF, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn class8_only_the_configured_header_is_believed() {
        let peer = ip("10.0.0.2");
        let trusted = nets(&["10.0.0.0/8"]);
        // A proxy that sets X-Forwarded-For passes the client's own Forwarded through, and the
        // other way round: the header it does not set is the client's word, never read.
        let xff = ["198.51.100.7"];
        let fwd = ["for=203.0.113.66"];
        assert_eq!(client_ip(peer, &xff, XFF, &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(peer, &fwd, FWD, &trusted), ip("203.0.113.66"));
        // Reading the X-Forwarded-For syntax as Forwarded (or back) parses nothing: the walk
        // stops at once and the client is the proxy.
        assert_eq!(client_ip(peer, &xff, FWD, &trusted), peer);
        assert_eq!(client_ip(peer, &fwd, XFF, &trusted), peer);
    }

    #[test]
    fn class8_an_unparseable_hop_stops_the_walk() {
        let peer = ip("10.0.0.2");
        let trusted = nets(&["10.0.0.0/8"]);
        // Garbage right of the real address: we cannot know who wrote what is left of it, so
        // the client is its right neighbour, the last address we could trust.
        assert_eq!(
            client_ip(peer, &["198.51.100.7, junk, 10.0.0.5"], XFF, &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip(peer, &["198.51.100.7, junk"], XFF, &trusted),
            peer
        );
        // Before, garbage was skipped and the allowed address on its left won.
        assert_eq!(
            client_ip(peer, &["198.51.100.7", "", "10.0.0.5"], XFF, &trusted),
            ip("10.0.0.5"),
            "an empty element stops the walk too"
        );
        // Garbage left of the first untrusted hop changes nothing.
        assert_eq!(
            client_ip(peer, &["junk, 198.51.100.7:1234"], XFF, &trusted),
            ip("198.51.100.7")
        );
        // Forwarded: obfuscated identifiers, `unknown` and elements without `for` stop it.
        for hop in [
            "for=_hidden",
            "for=unknown",
            "proto=https",
            "for=\"[2001:db8::1\"",
        ] {
            let value = format!("for=198.51.100.7, {hop}, for=10.0.0.5");
            assert_eq!(
                client_ip(peer, &[&value], FWD, &trusted),
                ip("10.0.0.5"),
                "{hop}"
            );
        }
    }

    #[test]
    fn hops_parse_strictly() {
        assert_eq!(parse_hop("[2001:db8::1]:80"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("[2001:db8::1]x"), None);
        assert_eq!(parse_hop("1.2.3.4:99999"), None);
        assert_eq!(parse_hop("1.2.3.4:"), None);
        assert_eq!(parse_hop("unknown"), None);
        assert_eq!(parse_hop(""), None);
    }

    #[test]
    fn class4_ipv6_clients_share_a_bucket_per_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(client_key(ip("198.51.100.7")), ip("198.51.100.7"));
        let l = ClientLimiter::new(&per_second(1, 1));
        assert!(l.check(ip("2001:db8:1:2::1")).is_ok());
        assert!(
            l.check(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).is_err(),
            "another address of the same /64 is the same client"
        );
        assert!(
            l.check(ip("2001:db8:1:3::1")).is_ok(),
            "the next /64 is not"
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

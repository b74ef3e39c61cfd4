//! Prometheus metrics, served as OpenMetrics text at `GET /metrics` (behind an admin
//! key) and, with `serve --metrics-listen`, on a separate address without one.
//!
//! Architecture invariant: no label carries a token, a key, an id or any text a client
//! sent. Labels come from fixed sets: route templates of the router (`unmatched` for
//! the rest), the method folded to a known name, status codes, verify outcomes and the
//! registry's own error codes, cache names, pool states.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/v1/agents/{id}`), or `unmatched`.
    pub route: String,
    /// GET, POST, … (anything else: `other`).
    pub method: String,
    /// The answer's status code.
    pub status: u16,
}

/// A request duration's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// As in [`HttpLabels`].
    pub route: String,
    /// As in [`HttpLabels`].
    pub method: String,
}

/// A verify decision's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allowed`, `denied` (valid token, not allowed) or `invalid`.
    pub outcome: String,
    /// The registry's error code (`TOKEN_REVOKED`, …), `none` when allowed.
    pub code: String,
}

/// A cache lookup's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// Which cache (`api_keys`, `agents`, …).
    pub cache: String,
    /// `hit` or `miss`.
    pub result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric the server keeps, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: HistogramFamily<RouteLabels>,
    verify_decisions: Family<DecisionLabels, Counter>,
    cache_lookups: Family<CacheLabels, Counter>,
    checkpoint_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    audit_log_entries: Gauge,
    upper_hashes: Gauge,
    store_connections: Family<ConnectionLabels, Gauge>,
    rate_limit_refusals: Family<PolicyLabels, Counter>,
    rate_limit_leases: Family<LeaseLabels, Counter>,
    quota_refusals: Counter,
    quota_warnings: Counter,
}

/// A rate-limit refusal's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy that refused: `ip`, `iss`, `admin`, `issuer`, `receiver`, `person`.
    pub policy: String,
}

/// A rate-limit lease's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// `granted` (some requests), `empty` (none: the shared bucket is empty) or
    /// `store_error` (the store could not be asked; this replica's own bucket decided).
    pub result: String,
}

/// A store connection count's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `in_use`, `idle` or `max`.
    pub state: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics, registered, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bonafide");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_seconds: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's routing to its answer, by route template and method",
            http_seconds.clone(),
        );
        let verify_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "verify_decisions",
            "Token verify decisions, by outcome and error code",
            verify_decisions.clone(),
        );
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Lookups in the in-memory caches of store records, by cache and hit or miss",
            cache_lookups.clone(),
        );
        let checkpoint_age_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "audit_checkpoint_age_seconds",
            "Seconds since the latest checkpoint this process knows was signed or adopted",
            checkpoint_age_seconds.clone(),
        );
        let audit_log_entries = Gauge::default();
        registry.register(
            "audit_checkpoint_entries",
            "Entries covered by the latest checkpoint this process knows",
            audit_log_entries.clone(),
        );
        let upper_hashes = Gauge::default();
        registry.register(
            "audit_upper_hashes",
            "Upper Merkle tree hashes held in memory for proofs",
            upper_hashes.clone(),
        );
        let store_connections = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "store_connections",
            "The store's pooled connections: in use, idle, and the most it opens",
            store_connections.clone(),
        );
        let rate_limit_refusals = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "rate_limit_refusals",
            "Requests refused 429 by a rate limit, by policy",
            rate_limit_refusals.clone(),
        );
        let rate_limit_leases = Family::<LeaseLabels, Counter>::default();
        registry.register(
            "rate_limit_leases",
            "Leases taken from the shared rate-limit buckets, by result",
            rate_limit_leases.clone(),
        );
        let quota_refusals = Counter::default();
        registry.register(
            "quota_refusals",
            "Verifications refused 429 QUOTA_EXCEEDED: an organisation's monthly quota was used up",
            quota_refusals.clone(),
        );
        let quota_warnings = Counter::default();
        registry.register(
            "quota_warnings",
            "Organisations that reached 80 % of their monthly verification quota (once each a month)",
            quota_warnings.clone(),
        );
        Metrics {
            registry,
            quota_refusals,
            quota_warnings,
            rate_limit_refusals,
            rate_limit_leases,
            store_connections,
            http_requests,
            http_seconds,
            verify_decisions,
            cache_lookups,
            checkpoint_age_seconds,
            audit_log_entries,
            upper_hashes,
        }
    }

    /// Registers the audit committer's histograms (owned by the audit log, which
    /// exists before the metrics).
    pub fn register_audit(&mut self, batch_entries: Histogram, commit_seconds: Histogram) {
        self.registry.register(
            "audit_commit_batch_entries",
            "Decisions written per group commit of the audit log",
            batch_entries,
        );
        self.registry.register(
            "audit_commit_duration_seconds",
            "Duration of each group commit of the audit log (write and fsync)",
            commit_seconds,
        );
    }

    /// Counts one answered request.
    pub fn observe_request(
        &self,
        route: &str,
        method: &axum::http::Method,
        status: u16,
        took: Duration,
    ) {
        let method = method_name(method).to_owned();
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.clone(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method,
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one verify decision; `code` is one of the registry's error or reason
    /// codes (anything not shaped like one is counted as `other`).
    pub fn observe_decision(&self, outcome: &'static str, code: Option<&str>) {
        let code = match code {
            None => "none",
            Some(c) if is_code(c) => c,
            Some(_) => "other",
        };
        self.verify_decisions
            .get_or_create(&DecisionLabels {
                outcome: outcome.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// Counts a request refused by the rate-limit policy `policy` (a fixed name).
    pub fn rate_limit_refused(&self, policy: &'static str) {
        self.rate_limit_refusals
            .get_or_create(&PolicyLabels {
                policy: policy.to_owned(),
            })
            .inc();
    }

    /// Counts leases from the shared buckets by result (`granted`, `empty`,
    /// `store_error`).
    pub fn rate_limit_leases(&self, result: &'static str, n: u64) {
        self.rate_limit_leases
            .get_or_create(&LeaseLabels {
                result: result.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts a verification refused for its organisation's quota.
    pub fn quota_refused(&self) {
        self.quota_refusals.inc();
    }

    /// Counts an organisation's 80 % quota warning.
    pub fn quota_warned(&self) {
        self.quota_warnings.inc();
    }

    /// The hit and miss counters of the cache called `name`.
    pub fn cache_counters(&self, name: &'static str) -> CacheCounters {
        let counter = |result: &str| {
            self.cache_lookups.get_or_create_owned(&CacheLabels {
                cache: name.to_owned(),
                result: result.to_owned(),
            })
        };
        CacheCounters {
            hits: counter("hit"),
            misses: counter("miss"),
        }
    }

    /// The text to serve, after setting the gauges read at scrape time.
    pub fn encode(&self, audit: &AuditGauges) -> Result<String, std::fmt::Error> {
        self.checkpoint_age_seconds.set(audit.checkpoint_age_s);
        self.audit_log_entries
            .set(i64::try_from(audit.checkpoint_entries).unwrap_or(i64::MAX));
        self.upper_hashes
            .set(i64::try_from(audit.upper_hashes).unwrap_or(i64::MAX));
        if let Some(pool) = audit.pool {
            for (state, n) in [
                ("in_use", pool.open.saturating_sub(pool.idle)),
                ("idle", pool.idle),
                ("max", pool.max),
            ] {
                self.store_connections
                    .get_or_create(&ConnectionLabels {
                        state: state.to_owned(),
                    })
                    .set(i64::from(n));
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// What the audit log says at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct AuditGauges {
    /// Seconds since the latest checkpoint known was signed or adopted.
    pub checkpoint_age_s: f64,
    /// Its size.
    pub checkpoint_entries: u64,
    /// Upper hashes held for proofs.
    pub upper_hashes: usize,
    /// The store's connection pool, if it has one.
    pub pool: Option<bonafide_store::PoolStatus>,
}

/// A cache's hit and miss counters ([`crate::bounded::Bounded::counted`]).
#[derive(Debug, Clone, Default)]
pub struct CacheCounters {
    /// Lookups answered from memory.
    pub hits: Counter,
    /// Lookups that went to the store (absent, stale or refused entries).
    pub misses: Counter,
}

/// `TOKEN_REVOKED`-shaped: what the registry's codes look like, and all a label takes.
fn is_code(text: &str) -> bool {
    (1..=48).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The method as a label: a known name, else `other` (a client may send any token).
fn method_name(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Shared by the state and the separate metrics listener.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_holds_each_family_with_fixed_labels_only() {
        let mut m = Metrics::new();
        m.register_audit(latency_histogram(), latency_histogram());
        m.observe_request(
            "/v1/agents/{id}",
            &axum::http::Method::GET,
            200,
            Duration::from_micros(300),
        );
        let odd = axum::http::Method::from_bytes(b"TOKEN-eyJhbGciOi").unwrap();
        m.observe_request("unmatched", &odd, 405, Duration::from_micros(10));
        m.observe_decision("invalid", Some("TOKEN_REVOKED"));
        m.observe_decision("allowed", None);
        m.observe_decision("denied", Some("scope read:x, from a client"));
        let c = m.cache_counters("api_keys");
        c.hits.inc();
        c.hits.inc();
        c.misses.inc();
        let text = m
            .encode(&AuditGauges {
                checkpoint_age_s: 0.25,
                checkpoint_entries: 42,
                upper_hashes: 7,
                pool: Some(bonafide_store::PoolStatus {
                    open: 3,
                    idle: 1,
                    max: 4,
                }),
            })
            .unwrap();
        for line in [
            "bonafide_http_requests_total{route=\"/v1/agents/{id}\",method=\"GET\",status=\"200\"} 1",
            "bonafide_http_requests_total{route=\"unmatched\",method=\"other\",status=\"405\"} 1",
            "bonafide_verify_decisions_total{outcome=\"invalid\",code=\"TOKEN_REVOKED\"} 1",
            "bonafide_verify_decisions_total{outcome=\"allowed\",code=\"none\"} 1",
            "bonafide_verify_decisions_total{outcome=\"denied\",code=\"other\"} 1",
            "bonafide_cache_lookups_total{cache=\"api_keys\",result=\"hit\"} 2",
            "bonafide_cache_lookups_total{cache=\"api_keys\",result=\"miss\"} 1",
            "bonafide_audit_checkpoint_age_seconds 0.25",
            "bonafide_audit_checkpoint_entries 42",
            "bonafide_audit_upper_hashes 7",
            "bonafide_store_connections{state=\"in_use\"} 2",
            "bonafide_store_connections{state=\"max\"} 4",
            "# TYPE bonafide_audit_commit_batch_entries histogram",
            "# TYPE bonafide_http_request_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("TOKEN-eyJ") && !text.contains("client"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

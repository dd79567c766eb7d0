//! The agent's metrics, in one registry, encoded in the Prometheus text exposition format by
//! `prometheus-client` (never formatted by hand). Recorders take plain labels (`&str`) so the
//! crates that record need no Prometheus types; this crate decides names, units and buckets.
//! It must never take a label from untrusted input with unbounded values (a guest name, an op
//! payload): every label here comes from a closed set in Steward's own code, so the number of
//! series stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    endpoint: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeldLabels {
    op: String,
    guest: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

fn api_buckets() -> Histogram {
    // 1 ms … ~16 s: a local pveproxy answers in milliseconds; a slow storage in seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn task_buckets() -> Histogram {
    // 50 ms … ~27 min: a start takes a second, a clone or a restore many minutes.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

fn barrier_buckets() -> Histogram {
    // 50 µs … ~0.8 s: an fdatasync on an SSD, up to a busy spinning disk.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

/// Every reason a guest can be parked for (the engine's `ParkReason` codes), each exported by
/// `steward_parked_guests` even at zero, so an alert on any of them has a series to watch.
pub const PARK_REASONS: &[&str] = &[
    "admin_lock",
    "denied",
    "held",
    "refused",
    "gone",
    "failing",
    "unsatisfiable",
    "internal",
];

/// Every metric the agent exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    passes: Counter,
    actions: Family<ActionLabels, Counter>,
    decisions: Family<ReasonLabels, Counter>,
    guests: Family<StateLabels, Gauge>,
    parked: Family<ReasonLabels, Gauge>,
    pass_reasons: Family<ReasonLabels, Counter>,
    held: Gauge,
    in_flight: Gauge,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Timings<RequestLabels>,
    task_seconds: Timings<TaskLabels>,
    barrier_seconds: Histogram,
    barrier_failures: Counter,
    provider_failures: Family<ChannelLabels, Gauge>,
    provider_last_success: Family<ChannelLabels, Gauge>,
    held_op: Family<HeldLabels, Gauge>,
    quorate: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What the guests the desired state names look like after a pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestCounts {
    /// Named by the desired state.
    pub managed: usize,
    /// Nothing to do.
    pub converged: usize,
    /// Something to do.
    pub drifting: usize,
    /// Waiting for an administrator.
    pub parked: usize,
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A fresh registry with every metric registered (at zero).
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("steward")),
            passes: Counter::default(),
            actions: Family::default(),
            decisions: Family::default(),
            guests: Family::default(),
            parked: Family::default(),
            pass_reasons: Family::default(),
            held: Gauge::default(),
            in_flight: Gauge::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(api_buckets),
            task_seconds: Family::new_with_constructor(task_buckets),
            barrier_seconds: barrier_buckets(),
            barrier_failures: Counter::default(),
            provider_failures: Family::default(),
            provider_last_success: Family::default(),
            held_op: Family::default(),
            quorate: Gauge::default(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register("passes", "Reconcile passes run", m.passes.clone());
            r.register(
                "actions",
                "Actions the engine handed to the gate, by op kind and how they ended",
                m.actions.clone(),
            );
            r.register(
                "gate_decisions",
                "Gate decisions, by reason (executed, pending_signature, replay, refused:<code>)",
                m.decisions.clone(),
            );
            r.register(
                "guests",
                "Guests the desired state names, by state after the last pass",
                m.guests.clone(),
            );
            r.register(
                "parked_guests",
                "Guests parked after the last pass, by reason (admin_lock, denied, held, refused, gone, failing, unsatisfiable, internal)",
                m.parked.clone(),
            );
            r.register(
                "pass_triggers",
                "Reconcile passes by what started them (tick, desired, action_ended, reconcile_now)",
                m.pass_reasons.clone(),
            );
            r.register(
                "held_ops",
                "Ops held for an operator's signature",
                m.held.clone(),
            );
            r.register(
                "held_op",
                "One series per op held for a signature (op id, guest, op kind), 1 while held: where held ops reach operators when no hub hears reports",
                m.held_op.clone(),
            );
            r.register("in_flight_ops", "Actions in flight", m.in_flight.clone());
            r.register(
                "cluster_quorate",
                "1 while the node has quorum; 0 while it has not and writes are paused",
                m.quorate.clone(),
            );
            r.register(
                "api_requests",
                "Proxmox API requests, by method, endpoint class (list, config, pending, status, task, write, other) and outcome (ok or the error kind)",
                m.requests.clone(),
            );
            r.register(
                "api_request_duration_seconds",
                "Proxmox API request latency, by method, endpoint class and outcome",
                m.request_seconds.clone(),
            );
            r.register(
                "task_duration_seconds",
                "How long Proxmox tasks the agent started took, by task type (qmstart, vzdestroy, …)",
                m.task_seconds.clone(),
            );
            r.register(
                "journal_barrier_seconds",
                "Journal durability barrier (flush + fdatasync) latency",
                m.barrier_seconds.clone(),
            );
            r.register(
                "journal_barrier_failures",
                "Journal durability barriers that failed",
                m.barrier_failures.clone(),
            );
            r.register(
                "provider_consecutive_failures",
                "Calls to the desired-state provider that failed in a row, by channel (desired, jobs, report)",
                m.provider_failures.clone(),
            );
            r.register(
                "provider_last_success_timestamp_seconds",
                "When a call to the provider last succeeded (Unix seconds; 0: never), by channel",
                m.provider_last_success.clone(),
            );
        }
        m
    }

    /// A call on provider channel `channel` (`desired`, `jobs`, `report`: a closed set) ended:
    /// `failures` in a row now, and when one last succeeded (Unix seconds, 0 for never).
    pub fn provider(&self, channel: &'static str, failures: u64, last_success_secs: i64) {
        let l = ChannelLabels {
            channel: channel.into(),
        };
        self.provider_failures
            .get_or_create(&l)
            .set(i64::try_from(failures).unwrap_or(i64::MAX));
        self.provider_last_success
            .get_or_create(&l)
            .set(last_success_secs);
    }

    /// A reconcile pass ran and left the guests so.
    pub fn pass(&self, guests: GuestCounts, held: usize, in_flight: usize) {
        self.passes.inc();
        for (state, n) in [
            ("managed", guests.managed),
            ("converged", guests.converged),
            ("drifting", guests.drifting),
            ("parked", guests.parked),
        ] {
            self.guests
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(gauge(n));
        }
        self.held.set(gauge(held));
        self.in_flight.set(gauge(in_flight));
    }

    /// After a pass: whether the node has quorum, and how many managed guests live on other
    /// nodes (`steward_guests{state="elsewhere"}`).
    pub fn cluster(&self, quorate: bool, elsewhere: usize) {
        self.quorate.set(i64::from(quorate));
        self.guests
            .get_or_create(&StateLabels {
                state: "elsewhere".into(),
            })
            .set(gauge(elsewhere));
    }

    /// A pass started, for `reason` (`tick`, `desired`, `action_ended`, `reconcile_now`).
    pub fn pass_reason(&self, reason: &'static str) {
        self.pass_reasons
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// The ops held now, each `(op id, guest, op kind)`: one series each; series of ops no
    /// longer held go.
    pub fn held_ops(&self, held: &[(u64, u32, &str)]) {
        self.held_op.clear();
        for (op, guest, kind) in held {
            self.held_op
                .get_or_create(&HeldLabels {
                    op: op.to_string(),
                    guest: guest.to_string(),
                    kind: (*kind).to_string(),
                })
                .set(1);
        }
    }

    /// Parked guests by reason code after a pass (every code, at zero when none).
    pub fn parked(&self, by_reason: &std::collections::BTreeMap<&'static str, usize>) {
        for &code in PARK_REASONS {
            let n = by_reason.get(code).copied().unwrap_or(0);
            self.parked
                .get_or_create(&ReasonLabels {
                    reason: code.into(),
                })
                .set(gauge(n));
        }
    }

    /// Actions in flight now.
    pub fn in_flight(&self, n: usize) {
        self.in_flight.set(gauge(n));
    }

    /// An action of `kind` (`guest.destroy`) ended with `outcome` (`succeeded`,
    /// `failed:locked`, `moved`, `pending_signature`, …).
    pub fn action(&self, kind: &str, outcome: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The gate decided, for `reason`.
    pub fn decision(&self, reason: &str) {
        self.decisions
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// A Proxmox API request ended: its method, endpoint class (`list`, `config`, `pending`,
    /// `status`, `task`, `write`, `other`), and outcome.
    pub fn request(&self, method: &str, endpoint: &str, outcome: &str, took: Duration) {
        let l = RequestLabels {
            method: method.into(),
            endpoint: endpoint.into(),
            outcome: outcome.into(),
        };
        self.requests.get_or_create(&l).inc();
        self.request_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// A Proxmox task of type `task_type` (its UPID's worker type, `qmstart`) ended after
    /// `took`.
    pub fn task(&self, task_type: &str, took: Duration) {
        self.task_seconds
            .get_or_create(&TaskLabels {
                task_type: task_type.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// A journal barrier ended after `took` (`ok` false: it failed).
    pub fn barrier(&self, took: Duration, ok: bool) {
        self.barrier_seconds.observe(took.as_secs_f64());
        if !ok {
            self.barrier_failures.inc();
        }
    }

    /// Everything, in the Prometheus text format (OpenMetrics 1.0 text, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn recorded_values_appear_with_their_labels() {
        let m = Metrics::new();
        m.pass(
            GuestCounts {
                managed: 5,
                converged: 3,
                drifting: 2,
                parked: 1,
            },
            1,
            2,
        );
        m.pass(GuestCounts::default(), 4, 0);
        m.action("guest.destroy", "pending_signature");
        m.action("guest.destroy", "pending_signature");
        m.decision("refused:replay");
        m.request("GET", "list", "ok", Duration::from_millis(3));
        m.task("qmstart", Duration::from_millis(700));
        m.barrier(Duration::from_micros(300), false);
        let t = m.encode();
        assert_eq!(
            line(&t, "steward_passes_total "),
            Some("steward_passes_total 2")
        );
        assert_eq!(line(&t, "steward_held_ops "), Some("steward_held_ops 4"));
        assert_eq!(
            line(&t, "steward_actions_total{"),
            Some("steward_actions_total{kind=\"guest.destroy\",outcome=\"pending_signature\"} 2")
        );
        assert_eq!(
            line(&t, "steward_gate_decisions_total{"),
            Some("steward_gate_decisions_total{reason=\"refused:replay\"} 1")
        );
        assert_eq!(
            line(&t, "steward_api_requests_total{"),
            Some("steward_api_requests_total{method=\"GET\",endpoint=\"list\",outcome=\"ok\"} 1")
        );
        assert!(
            t.contains("steward_task_duration_seconds_count{task_type=\"qmstart\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("steward_journal_barrier_failures_total 1"),
            "{t}"
        );
        assert!(t.contains("steward_guests{state=\"managed\"} 0"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}

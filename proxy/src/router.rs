//! The one place that owns the [`Tracker`]: applies each piece of [`Evidence`] from the checks, publishes the
//! route to the frontends and the candidate to the role checks, and reports changes as events and metrics, with
//! the evidence that decided them.

use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::checks::Evidence;
use crate::events::{monotonic_ns, Events};
use crate::metrics::{Metrics, Target};
use crate::tracker::{Refusal, Route, Tracker};

pub struct Router {
    pub tracker: Tracker,
    pub sentinels: Vec<SocketAddrV4>,
    pub route: watch::Sender<Route>,
    pub candidate: watch::Sender<Option<SocketAddrV4>>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
}

fn describe(route: &Route) -> serde_json::Value {
    match route {
        Route::Master(node) => json!({"route": "master", "master": node.to_string()}),
        Route::Refuse(refusal) => {
            let reason = match refusal {
                Refusal::NoQuorum => "no quorum of Sentinels names a master".to_string(),
                Refusal::Tie(nodes) => {
                    let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                    format!("the Sentinels are split: {} are named equally often", nodes.join(", "))
                }
                Refusal::Unconfirmed(node) => format!("{node} named by the Sentinels has not said ROLE master"),
                Refusal::FailoverUnderway(node) => {
                    format!("failover under way: {node} was promoted, the Sentinels do not name it yet")
                }
                Refusal::FailoverStarted(index) => format!("Sentinel {index} started a failover"),
                Refusal::NoMaster => "no server says master".to_string(),
                Refusal::SplitBrain(nodes) => {
                    let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                    format!("split brain: {} all say master", nodes.join(", "))
                }
            };
            json!({"route": "refuse", "reason": reason})
        }
    }
}

fn describe_evidence(evidence: &Evidence, sentinels: &[SocketAddrV4]) -> serde_json::Value {
    let sentinel = |index: &usize| sentinels.get(*index).map(ToString::to_string);
    match evidence {
        Evidence::Named {
            sentinel: index,
            address,
            error,
        } => json!({
            "sentinel": sentinel(index),
            "get-master-addr-by-name": address.map(|a| a.to_string()),
            "error": error,
        }),
        Evidence::Switched {
            sentinel: index,
            switch,
        } => json!({
            "sentinel": sentinel(index),
            "+switch-master": format!("{} {} {}", switch.name, switch.from, switch.to),
        }),
        Evidence::Failover {
            sentinel: index,
            progress,
        } => json!({
            "sentinel": sentinel(index),
            "channel": progress.channel,
            "master_name": progress.name,
        }),
        Evidence::Role { node, role, error } => json!({
            "node": node.to_string(),
            "role": role.map(|r| format!("{r:?}").to_lowercase()),
            "error": error,
        }),
    }
}

impl Router {
    /// Runs until every check task has gone.
    pub async fn run(mut self, mut evidence: mpsc::Receiver<Evidence>) {
        let mut failing: HashSet<String> = HashSet::new();
        let mut current = self.tracker.route();
        // The last node routed to, to count switches from one master to another (not refusals in between).
        let mut last_master = None;
        self.publish(&current, None);
        while let Some(found) = evidence.recv().await {
            self.note_failure(&found, &mut failing);
            match &found {
                Evidence::Named { sentinel, address, .. } => self.tracker.sentinel_named(*sentinel, *address),
                Evidence::Switched { sentinel, switch } => self.tracker.switch_announced(*sentinel, switch),
                Evidence::Role { node, role, .. } => self.tracker.role_answered(*node, *role),
                Evidence::Failover { sentinel, progress } => {
                    self.events
                        .emit("sentinel_failover", describe_evidence(&found, &self.sentinels));
                    self.tracker.failover_announced(*sentinel, progress, monotonic_ns())
                }
            }
            self.tracker.expire(monotonic_ns());
            self.candidate.send_if_modified(|candidate| {
                let changed = *candidate != self.tracker.candidate();
                *candidate = self.tracker.candidate();
                changed
            });
            let route = self.tracker.route();
            if route != current {
                self.publish(&route, Some(&found));
                if let Route::Master(node) = route {
                    if last_master.is_some_and(|last| last != node) {
                        self.metrics.switches.inc();
                    }
                    last_master = Some(node);
                }
                current = route;
            }
        }
    }

    fn publish(&self, route: &Route, evidence: Option<&Evidence>) {
        let mut fields = describe(route);
        let named: Vec<Option<String>> = self.tracker.named().iter().map(|a| a.map(|a| a.to_string())).collect();
        fields["sentinels_name"] = json!(named);
        if let Some(evidence) = evidence {
            fields["decided_by"] = describe_evidence(evidence, &self.sentinels);
        }
        self.events.emit("route", fields);
        let master = match route {
            Route::Master(node) => Some(*node),
            Route::Refuse(_) => None,
        };
        self.metrics.routed_to(master);
        self.route.send_replace(route.clone());
    }

    /// Counts failed checks, and reports a target's first failure and its recovery (not every failed attempt).
    fn note_failure(&self, evidence: &Evidence, failing: &mut HashSet<String>) {
        let (kind, target, error) = match evidence {
            Evidence::Named { sentinel, error, .. } => (
                "sentinel",
                self.sentinels
                    .get(*sentinel)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                error,
            ),
            Evidence::Role { node, error, .. } => ("role", node.to_string(), error),
            Evidence::Switched { .. } | Evidence::Failover { .. } => return,
        };
        match error {
            Some(error) => {
                self.metrics
                    .check_failures
                    .get_or_create(&Target {
                        kind,
                        address: target.clone(),
                    })
                    .inc();
                if failing.insert(target.clone()) {
                    self.events
                        .emit("check_failed", json!({"check": kind, "target": target, "error": error}));
                }
            }
            None => {
                if failing.remove(&target) {
                    self.events
                        .emit("check_recovered", json!({"check": kind, "target": target}));
                }
            }
        }
    }
}

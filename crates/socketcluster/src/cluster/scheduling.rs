//! The broker processes' scheduling policy (`brokerScheduling`, docs/cluster.md "Broker
//! scheduling").

use crate::config::BrokerScheduling;

/// Puts the calling thread under `policy`; threads it starts afterwards inherit it, so a broker
/// calls this before its runtime starts its threads. A policy the kernel refuses is logged and
/// the process runs on under the policy it had.
pub(crate) fn apply(policy: BrokerScheduling) {
    match policy {
        BrokerScheduling::Normal => {}
        BrokerScheduling::Batch => batch(),
    }
}

#[cfg(target_os = "linux")]
fn batch() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityOsValue};

    // SCHED_BATCH takes static priority 0 and the crate sets nice 0 with it (the only value it
    // accepts for this policy): a broker started under `nice` gets its nice value back to 0 if
    // it may, or keeps it and logs why.
    let nice_zero = ThreadPriority::Os(ThreadPriorityOsValue::default());
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    match set_thread_priority_and_policy(thread_native_id(), nice_zero, policy) {
        Ok(()) => tracing::debug!("broker runs under SCHED_BATCH"),
        Err(e) => tracing::warn!(
            error = ?e,
            "could not fully apply brokerScheduling = batch (SCHED_BATCH, nice 0)"
        ),
    }
}

#[cfg(not(target_os = "linux"))]
fn batch() {}

//! What the driver needs of a deployment, whichever it is: one this tool
//! starts per run ([`crate::deployment::Deployment`]) or an existing one it
//! was pointed at ([`crate::target::Target`]).

use anyhow::Context as _;
use switchyard_bridge_sim::RecordedSend;

pub trait Stack {
    /// The URL each tenant's events are posted to, in the scenario's order.
    fn webhook_urls(&self) -> &[String];
    /// Every send the simulator accepted (the run's and, on a shared
    /// simulator, others': the driver keeps only its own tenants').
    async fn sends(&self) -> anyhow::Result<Vec<RecordedSend>>;
    /// Messages the routers and senders dead-lettered during this run.
    async fn dead_letters(&self) -> anyhow::Result<u64>;
    /// The processes whose CPU and memory are sampled, by name.
    fn processes(&self) -> Vec<(String, u32)>;
}

/// The dead letters counted so far by the services whose ops endpoints
/// (`http://host:port`) are given, from their own `/metrics`.
pub async fn dead_letters_at(ops: &[String]) -> anyhow::Result<u64> {
    let mut total = 0.0;
    for base in ops {
        let text = reqwest::get(format!("{}/metrics", base.trim_end_matches('/')))
            .await
            .with_context(|| format!("scraping {base}/metrics"))?
            .error_for_status()?
            .text()
            .await?;
        total += switchyard_tests::traffic::metric_sum(
            &text,
            switchyard_shared::metrics::DEAD_LETTERS,
            "",
        );
    }
    Ok(total as u64)
}

//! The simulator's `/_sim` control surface over HTTP (see `docs/wabridges.md`):
//! what the load tool needs to set up a run and read its outcome on a
//! simulator it did not start (a `deploy/cluster.sh` stack, a staging system).
//! The local deployment provisions through it too, so both paths set up
//! tenants and faults the same way.

use anyhow::Context as _;
use serde_json::json;
use switchyard_bridge_sim::{BridgeView, Fault, FaultPlan, RecordedSend};

/// A client of one simulator's control surface.
#[derive(Debug, Clone)]
pub struct SimControl {
    base: String,
    http: reqwest::Client,
}

impl SimControl {
    /// `base` is the simulator's root URL (`http://127.0.0.1:18090`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_sim{path}", self.base)
    }

    async fn expect_ok(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("{what}: the simulator at {} did not answer", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("{what}: the simulator answered {status}: {body}");
        }
        Ok(response)
    }

    /// Checks that a simulator answers at `base` (a typo'd URL fails here, not mid-run).
    pub async fn check(&self) -> anyhow::Result<()> {
        self.expect_ok("listing bridges", self.http.get(self.url("/bridges")))
            .await
            .map(drop)
    }

    /// Provisions (or finds) `customer_ref`'s bridge, posting to `webhook_url`.
    pub async fn seed_bridge(
        &self,
        customer_ref: &str,
        webhook_url: &str,
    ) -> anyhow::Result<BridgeView> {
        let body = json!({"customer_ref": customer_ref, "webhook_url": webhook_url});
        let response = self
            .expect_ok(
                &format!("seeding {customer_ref}'s bridge"),
                self.http.post(self.url("/bridges")).json(&body),
            )
            .await?;
        Ok(response.json().await?)
    }

    /// Every call to `customer_ref`'s bridge answers after `ms` milliseconds.
    pub async fn set_latency(&self, customer_ref: &str, ms: u64) -> anyhow::Result<()> {
        let path = format!("/bridges/{customer_ref}/latency");
        self.expect_ok(
            &format!("slowing {customer_ref}'s bridge"),
            self.http.put(self.url(&path)).json(&json!({ "ms": ms })),
        )
        .await
        .map(drop)
    }

    /// `customer_ref`'s bridge misbehaves with `fault` until cleared.
    pub async fn set_fault(&self, customer_ref: &str, fault: Fault) -> anyhow::Result<()> {
        let path = format!("/bridges/{customer_ref}/fault");
        let plan = FaultPlan { fault, times: None };
        self.expect_ok(
            &format!("setting a fault on {customer_ref}'s bridge"),
            self.http.put(self.url(&path)).json(&plan),
        )
        .await
        .map(drop)
    }

    /// Clears `customer_ref`'s fault and latency (the end of a run on a shared simulator).
    pub async fn clear_faults(&self, customer_ref: &str) -> anyhow::Result<()> {
        let path = format!("/bridges/{customer_ref}/fault");
        self.expect_ok(
            &format!("clearing {customer_ref}'s fault"),
            self.http.delete(self.url(&path)),
        )
        .await?;
        self.set_latency(customer_ref, 0).await
    }

    /// Every send the simulator accepted.
    pub async fn sends(&self) -> anyhow::Result<Vec<RecordedSend>> {
        let response = self
            .expect_ok("reading the sends", self.http.get(self.url("/sends")))
            .await?;
        Ok(response.json().await?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_bridge_sim::{SimConfig, SimHandle};

    use super::*;

    #[tokio::test]
    async fn a_run_is_set_up_and_cleared_through_the_control_surface() {
        let sim = SimHandle::start(SimConfig::new("sk_test")).await.unwrap();
        let control = SimControl::new(&format!("{}/", sim.base_url())).unwrap();
        control.check().await.unwrap();

        let view = control
            .seed_bridge("lt1-0-noisy", "http://127.0.0.1:9/hooks/x")
            .await
            .unwrap();
        assert_eq!(view.customer_ref, "lt1-0-noisy");
        assert_eq!(sim.bridge("lt1-0-noisy").unwrap().id, view.id);

        control.set_latency("lt1-0-noisy", 250).await.unwrap();
        control
            .set_fault("lt1-0-noisy", Fault::ServerError { status: 503 })
            .await
            .unwrap();
        let seen = sim.bridge("lt1-0-noisy").unwrap();
        assert_eq!(seen.latency_ms, 250);
        assert_eq!(
            seen.fault.map(|p| p.fault),
            Some(Fault::ServerError { status: 503 })
        );

        control.clear_faults("lt1-0-noisy").await.unwrap();
        let cleared = sim.bridge("lt1-0-noisy").unwrap();
        assert_eq!((cleared.latency_ms, cleared.fault), (0, None));
        assert!(control.sends().await.unwrap().is_empty());
        sim.stop().await;
    }

    #[tokio::test]
    async fn an_unknown_bridge_or_a_wrong_url_is_a_clear_error() {
        let sim = SimHandle::start(SimConfig::new("sk_test")).await.unwrap();
        let control = SimControl::new(&sim.base_url()).unwrap();
        let err = control.set_latency("nobody", 10).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("slowing nobody's bridge: the simulator answered 404"),
            "{err:#}"
        );
        sim.stop().await;

        let gone = SimControl::new("http://127.0.0.1:9").unwrap();
        let err = tokio::time::timeout(Duration::from_secs(20), gone.check())
            .await
            .unwrap()
            .unwrap_err();
        assert!(format!("{err:#}").contains("did not answer"), "{err:#}");
    }
}

//! `fanout` and `topics`: one publish rate for one duration. They differ only in how many
//! topics the connections are spread over (one, or `--topics`), which the plan already says.
//! Of cooperating drivers (`--shard`) only the first publishes; the others listen as long.

use crate::fleet::StormPlan;
use crate::plan::Plan;
use crate::report::{Details, Report};
use crate::scenarios::Stage;

/// Runs the scenario, reported under `scenario`.
pub(crate) async fn run(scenario: &'static str, plan: Plan) -> Report {
    let stage = Stage::open(plan, StormPlan::NONE).await;
    let mut publisher = stage.publisher();
    let window = stage.window(publisher.published());
    // A shard that does not publish listens for as long (see `window`).
    let publishing = if stage.plan.shard.publishes() {
        publisher
            .publish(stage.plan.rate, stage.plan.duration)
            .await
    } else {
        tokio::time::sleep(stage.plan.duration).await;
        stage.plan.duration
    };
    let whole = stage
        .measure(window, publisher.published(), publishing)
        .await;
    let params = stage.plan.params.clone();
    stage
        .finish(scenario, params, whole, Details::Steady {})
        .await
}

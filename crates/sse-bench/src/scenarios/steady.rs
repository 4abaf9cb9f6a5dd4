//! `fanout` and `topics`: one publish rate for one duration. They differ only in how many
//! topics the connections are spread over (one, or `--topics`), which the plan already says.

use crate::fleet::StormPlan;
use crate::plan::Plan;
use crate::report::{Details, Report};
use crate::scenarios::Stage;

/// Runs the scenario, reported under `scenario`.
pub(crate) async fn run(scenario: &'static str, plan: Plan) -> Report {
    let stage = Stage::open(plan, StormPlan::NONE).await;
    let mut publisher = stage.publisher();
    let window = stage.window(publisher.published());
    let publishing = publisher
        .publish(stage.plan.rate, stage.plan.duration)
        .await;
    let whole = stage
        .measure(window, publisher.published(), publishing)
        .await;
    let params = stage.plan.params.clone();
    stage
        .finish(scenario, params, whole, Details::Steady {})
        .await
}

//! `idle`: what connections cost the server when nothing happens. Memory is sampled at every
//! 10 % of the connections while they open, then they are held for `--duration` (a server
//! that leaks per connection over time, or drops idle ones, shows it).

use crate::fleet::StormPlan;
use crate::plan::Plan;
use crate::report::{Details, Params, Report};
use crate::scenarios::Stage;

/// Runs the scenario.
pub(crate) async fn run(plan: Plan) -> Report {
    let stage = Stage::open(plan, StormPlan::NONE).await;
    let window = stage.window(stage.nothing_published());
    tokio::time::sleep(stage.plan.duration).await;
    let whole = stage
        .measure(window, stage.nothing_published(), stage.plan.duration)
        .await;
    let params = Params {
        rate: Some(0),
        ..stage.plan.params.clone()
    };
    let details = Details::Idle {
        memory_samples: stage.memory_samples(),
    };
    stage.finish("idle", params, whole, details).await
}

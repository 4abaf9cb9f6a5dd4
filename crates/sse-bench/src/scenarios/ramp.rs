//! `ramp`: the highest rate the server sustains. Each rate of `--rates` is published for
//! `--step` and measured on its own (fresh counters and latency); a step passes if nothing is
//! missing, p99 is below `--max-p99`, and the publisher achieved 95 % of the rate (else the
//! number would be the publisher's, not the subscriber side's). The first failing step ends
//! the ramp; `best` is the passing step that delivered the most events per second.

use std::time::Duration;

use crate::cli::RampOptions;
use crate::plan::Plan;
use crate::report::{Best, Details, Latency, Params, Report, ScenarioParams, Step, round};
use crate::scenarios::Stage;

/// The share of the target rate the publisher must achieve for a step to pass.
const KEPT_UP: f64 = 0.95;

/// Runs the scenario.
pub(crate) async fn run(plan: Plan, options: &RampOptions) -> Report {
    let stage = Stage::open(plan, 0).await;
    let mut publisher = stage.publisher();
    let whole = stage.window(publisher.published());
    let max_p99_ms = options.max_p99.as_secs_f64() * 1000.0;
    let mut steps = Vec::new();
    let mut publishing_total = Duration::ZERO;
    for &rate in &options.rates {
        let window = stage.window(publisher.published());
        let publishing = publisher.publish(rate, options.step).await;
        publishing_total += publishing;
        let measured = stage
            .measure(window, publisher.published(), publishing)
            .await;
        let achieved = measured.events.published as f64 / publishing.as_secs_f64().max(1e-3);
        let latency = Latency::of(&measured.latency);
        let passed = measured.events.missing == 0
            && latency.p99 < max_p99_ms
            && achieved >= KEPT_UP * rate as f64;
        eprintln!(
            "step {rate}/s: published {achieved:.0}/s, delivered {}/s, missing {}, p99 {} ms: {}",
            measured.events.delivered_per_second,
            measured.events.missing,
            latency.p99,
            if passed { "passed" } else { "failed" },
        );
        steps.push(Step {
            rate,
            published_per_second: achieved.round(),
            events: measured.events,
            latency_ms: latency,
            passed,
        });
        if !passed {
            break;
        }
    }
    let best = steps
        .iter()
        .filter(|step| step.passed)
        .max_by(|a, b| {
            a.events
                .delivered_per_second
                .total_cmp(&b.events.delivered_per_second)
        })
        .map(|step| Best {
            rate: step.rate,
            delivered_per_second: step.events.delivered_per_second,
            p99_ms: step.latency_ms.p99,
        });
    let whole = stage
        .measure(whole, publisher.published(), publishing_total)
        .await;
    let params = Params {
        rate: None,
        duration_s: None,
        scenario: ScenarioParams::Ramp {
            rates: options.rates.clone(),
            step_s: round(options.step.as_secs_f64(), 3),
            max_p99_ms,
        },
        ..stage.plan.params.clone()
    };
    stage
        .finish("ramp", params, whole, Details::Ramp { steps, best })
        .await
}

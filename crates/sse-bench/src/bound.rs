//! Which side limited a measurement: the driver, the server, or the server's publish path.
//!
//! On a shared machine a figure such as "deliveries per second" is only the server's if the
//! server was the side that ran out. So every measurement records the CPU of both sides, and
//! is labelled, in this order of precedence:
//!
//! - `driver`: the driver used more than [`SATURATED_PERCENT`] of the cores it may run on, or
//!   those cores were that busy altogether (the driver shares its core with Redis); whatever
//!   the server did, the figures may be the driver's ceiling;
//! - `server`: the `--pid` processes used more than [`SATURATED_PERCENT`] of the cores they
//!   may run on together;
//! - `publisher`: neither core was saturated but publishing reached less than [`KEPT_UP`] of
//!   the rate asked: the server's publish endpoint answered too slowly;
//! - `none`: nothing ran out; the run kept the rate asked.

use serde::Serialize;

/// CPU use, in percent of the cores a side may use, above which that side is saturated.
pub(crate) const SATURATED_PERCENT: f64 = 85.0;

/// The share of the asked rate publishing must reach to count as having kept up.
pub(crate) const KEPT_UP: f64 = 0.95;

/// What limited a measurement (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BoundBy {
    Driver,
    Server,
    Publisher,
    None,
}

/// How many CPUs each side may run on (from their affinity masks); `None` if unknown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cores {
    pub(crate) driver: Option<usize>,
    pub(crate) server: Option<usize>,
}

/// What a measurement says about the load on each side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Busy {
    /// Driver CPU, in percent of one core.
    pub(crate) driver_cpu_percent: f64,
    /// Server CPU (all `--pid` processes), in percent of one core; `None` without `--pid`.
    pub(crate) server_cpu_percent: Option<f64>,
    /// How busy the driver's cores were, whatever ran there, in percent of those cores.
    pub(crate) driver_core_busy_percent: Option<f64>,
    /// The rate asked, events per second; `None` where nothing was asked (idle, a whole ramp).
    pub(crate) asked_rate: Option<u64>,
    /// The rate publishing reached, events per second.
    pub(crate) achieved_rate: f64,
}

/// Whether `percent` (of one core) saturates `cores` cores (one if unknown).
fn saturated(percent: f64, cores: Option<usize>) -> bool {
    percent > SATURATED_PERCENT * cores.unwrap_or(1).max(1) as f64
}

impl Busy {
    /// Whether the driver, or the cores it runs on, were saturated.
    pub(crate) fn driver_bound(&self, cores: Cores) -> bool {
        saturated(self.driver_cpu_percent, cores.driver)
            || self
                .driver_core_busy_percent
                .is_some_and(|busy| busy > SATURATED_PERCENT)
    }

    /// Whether publishing fell short of the rate asked.
    pub(crate) fn publishing_fell_short(&self) -> bool {
        self.asked_rate
            .is_some_and(|asked| asked > 0 && self.achieved_rate < KEPT_UP * asked as f64)
    }

    /// What limited the measurement.
    pub(crate) fn bound_by(&self, cores: Cores) -> BoundBy {
        if self.driver_bound(cores) {
            BoundBy::Driver
        } else if self
            .server_cpu_percent
            .is_some_and(|server| saturated(server, cores.server))
        {
            BoundBy::Server
        } else if self.publishing_fell_short() {
            BoundBy::Publisher
        } else {
            BoundBy::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_EACH: Cores = Cores {
        driver: Some(1),
        server: Some(1),
    };

    fn busy(driver: f64, server: f64, asked: u64, achieved: f64) -> Busy {
        Busy {
            driver_cpu_percent: driver,
            server_cpu_percent: Some(server),
            driver_core_busy_percent: None,
            asked_rate: Some(asked),
            achieved_rate: achieved,
        }
    }

    #[test]
    fn the_driver_comes_first_then_the_server_then_publishing() {
        assert_eq!(
            busy(90.0, 99.0, 100, 10.0).bound_by(ONE_EACH),
            BoundBy::Driver
        );
        assert_eq!(
            busy(50.0, 99.0, 100, 10.0).bound_by(ONE_EACH),
            BoundBy::Server
        );
        assert_eq!(
            busy(50.0, 50.0, 100, 90.0).bound_by(ONE_EACH),
            BoundBy::Publisher
        );
        assert_eq!(
            busy(50.0, 50.0, 100, 96.0).bound_by(ONE_EACH),
            BoundBy::None
        );
    }

    #[test]
    fn saturation_is_judged_against_the_cores_a_side_may_use() {
        let two = Cores {
            driver: Some(2),
            server: Some(2),
        };
        assert_eq!(busy(150.0, 150.0, 100, 100.0).bound_by(two), BoundBy::None);
        assert!(busy(171.0, 0.0, 100, 100.0).driver_bound(two));
    }

    #[test]
    fn a_busy_driver_core_makes_the_run_driver_bound_too() {
        let shared_core = Busy {
            driver_core_busy_percent: Some(95.0),
            ..busy(60.0, 50.0, 100, 80.0)
        };
        assert_eq!(shared_core.bound_by(ONE_EACH), BoundBy::Driver);
    }

    #[test]
    fn nothing_asked_or_no_server_pids_is_never_publisher_or_server_bound() {
        let idle = Busy {
            driver_cpu_percent: 5.0,
            server_cpu_percent: None,
            driver_core_busy_percent: None,
            asked_rate: None,
            achieved_rate: 0.0,
        };
        assert_eq!(idle.bound_by(ONE_EACH), BoundBy::None);
        assert!(!busy(5.0, 5.0, 0, 0.0).publishing_fell_short());
    }
}

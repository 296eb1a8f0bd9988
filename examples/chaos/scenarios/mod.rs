//! One module per scenario of `--scenarios`; each has `run(&Ctx) -> Vec<Row>`, listed in
//! `SCENARIOS` in main.rs. What they share is in `ctx`, `load`, `report` and `broker`.

pub mod crash;
pub mod disk;
pub mod log;
pub mod outage;
pub mod refuse;
pub mod restart;

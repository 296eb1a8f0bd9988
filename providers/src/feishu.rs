//! PLACEHOLDER: being written (see the issue for this provider).

use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Feishu;

impl Feishu {
    pub fn new(_c: &Config) -> Result<Self, Vec<ConfigError>> {
        Err(vec![ConfigError::new(
            "provider",
            "not available in this build",
        )])
    }
}

impl crate::Provider for Feishu {
    fn kind(&self) -> crate::ProviderKind {
        unreachable!()
    }
    fn admit(
        &self,
        _r: &crate::RawRequest<'_>,
        _n: std::time::SystemTime,
    ) -> Result<crate::Admission, crate::Rejection> {
        unreachable!()
    }
}

pub fn sample(
    _c: &Config,
    _o: &crate::sign::SampleOptions,
) -> Result<crate::sign::SampleRequest, String> {
    Err("not available in this build".into())
}

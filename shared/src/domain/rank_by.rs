use serde::{Deserialize, Serialize};

/// What the campaign-strategy job ranks campaigns by. Both rates are per delivered message;
/// `customerio::CampaignMetrics::rate` computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    ConversionRate,
    ClickRate,
}

impl RankBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RankBy::ConversionRate => "conversion_rate",
            RankBy::ClickRate => "click_rate",
        }
    }

    /// How a prompt says it.
    pub fn label(self) -> &'static str {
        match self {
            RankBy::ConversionRate => "conversion rate",
            RankBy::ClickRate => "click rate",
        }
    }
}

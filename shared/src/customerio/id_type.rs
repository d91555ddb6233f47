use serde::Deserialize;

/// The App API's `id_type` for `GET /v1/customers/{id}/attributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    Id,
    Email,
    Phone,
    CioId,
}

impl IdType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdType::Id => "id",
            IdType::Email => "email",
            IdType::Phone => "phone",
            IdType::CioId => "cio_id",
        }
    }
}

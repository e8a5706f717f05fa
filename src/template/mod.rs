//! TEMPORARY stand-in until the template module lands.
/// Stand-in.
pub struct Template(String);
impl Template {
    /// Stand-in.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(Self(text.to_owned()))
    }
    /// Stand-in.
    pub fn execute(&self, _data: &serde_json::Value) -> anyhow::Result<String> {
        Ok(self.0.clone())
    }
}

//! TEMPORARY stand-in until the units module lands.
/// Stand-in.
pub fn human_size(bytes: u64) -> String {
    format!("{bytes}B")
}
/// Stand-in.
pub fn human_duration(d: std::time::Duration) -> String {
    format!("{} seconds", d.as_secs())
}

//! TEMPORARY stand-in until the units module lands.
/// Stand-in.
pub fn human_size(bytes: u64) -> String {
    format!("{bytes}B")
}

//! Image archives: `docker save` tarballs (legacy and Docker 25+ layouts)
//! and OCI image-layout tarballs, read by [`load`] and written by [`save`];
//! an image's flattened file system, by [`rootfs`].

pub mod load;
pub mod rootfs;
pub mod save;

pub use load::{LayoutSelector, LoadedImage, load_archive, load_layout};
pub use rootfs::unpack_rootfs;
pub use save::{SaveFormat, save_archive, save_layout};

/// Normalises a path inside an archive: strips `./` and leading `/`,
/// resolves `.`, and returns `None` when `..` would leave the archive.
pub(crate) fn clean_archive_path(path: &str) -> Option<String> {
    let parts =
        kiln_rootfs::path::components(path.as_bytes(), kiln_rootfs::path::Escape::Error).ok()?;
    String::from_utf8(parts.join(&b'/')).ok()
}

#[cfg(test)]
mod tests {
    use super::clean_archive_path;

    #[test]
    fn archive_paths_are_confined() {
        assert_eq!(clean_archive_path("./a/./b").as_deref(), Some("a/b"));
        assert_eq!(clean_archive_path("/a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(clean_archive_path("../x"), None);
        assert_eq!(clean_archive_path("a/../../x"), None);
    }
}

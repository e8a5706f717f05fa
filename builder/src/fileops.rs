//! STUB (replaced by the fileops branch).
#![allow(missing_docs, clippy::all, clippy::pedantic, unused)]
use std::path::{Path, PathBuf};
use crate::context::{BuildContext, Source};
use crate::error::BuildError;
#[derive(Debug, Clone, Copy)]
pub struct Owner { pub uid: u32, pub gid: u32 }
#[derive(Debug, Clone)]
pub struct CopyOptions { pub owner: Option<Owner>, pub chmod: Option<kiln_parser::values::Chmod>, pub unpack_archives: bool, pub preserve_owner: bool, pub clamp_mtime: Option<i64> }
pub fn resolve_chown(root: &Path, spec: &str) -> Result<Owner, BuildError> { Ok(Owner{uid:0,gid:0}) }
pub fn copy_sources(ctx: &BuildContext, sources: &[Source], root: &Path, dest: &str, dest_is_dir: bool, opts: &CopyOptions) -> Result<(), BuildError> {
  for s in sources {
    let src = ctx.root().join(&s.path);
    let target = if dest_is_dir || s.copy_contents { crate::rootfs::mkdir_all_in_root(root, dest, None)?.join(&s.dest) } else { crate::rootfs::resolve_in_root(root, dest)? };
    let st = std::process::Command::new("cp").arg("-a").arg(if s.copy_contents { src.join(".") } else { src.clone() }).arg(&target).status().unwrap();
    assert!(st.success());
  }
  Ok(())
}
pub fn write_inline(root: &Path, files: &[(String, String)], dest: &str, opts: &CopyOptions) -> Result<(), BuildError> { Ok(()) }
pub fn download(url: &str, checksum: Option<&str>, tmp_dir: &Path) -> Result<(PathBuf, String), BuildError> { todo!() }
pub fn copy_file_to(root: &Path, file: &Path, name: &str, dest: &str, dest_is_dir: bool, opts: &CopyOptions) -> Result<(), BuildError> { Ok(()) }

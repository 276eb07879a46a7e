// Online backup of the broker's database (`farmhand admin backup FILE`): where a
// copy may go, and writing it there without ever replacing what it must not.
//
// A backup target must be absolute, its parent directory must exist, and it must
// lie under broker.backup_dir or one of broker.allowed_roots (when neither is set,
// anywhere). It is never the state dir or inside it: the parent directory, with its
// symlinks resolved, is compared by device and inode with the state dir and each of
// its ancestors, so farmhand.db, its -wal and -shm files and any other name there
// are refused however they are spelled. An existing target is refused unless `force`.
//
// backup_database copies through its own read-only connection into a fresh file made
// with O_EXCL beside the target, fsyncs it, then renames it into place without
// replacing anything that appeared meanwhile (RENAME_NOREPLACE, or link+unlink where
// the file system lacks it), or with `force` by a plain rename, which replaces a
// symlink planted at the target rather than following it; then it fsyncs the
// directory. The target is checked again right before the copy.
//
// Stateless functions; backup_database may run on any thread (it opens its own
// connections).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace farmhand::daemon {

struct BackupPolicy {
  std::string state_dir;                   // never onto or inside it
  std::string backup_dir;                  // broker.backup_dir; empty: none
  std::vector<std::string> allowed_roots;  // broker.allowed_roots
  bool force = false;                      // replace an existing target
};

// The target with its parent's symlinks resolved, or why it may not be written:
// "backup path /var/lib/farmhand/farmhand.db-wal is in the state dir /var/lib/farmhand",
// "backup path /tmp/x.db is outside broker.backup_dir and broker.allowed_roots
// (/srv/backups)", "backup path /srv/backups/x.db exists; add --force to replace it".
[[nodiscard]] Result<std::string> check_backup_target(const std::string& target,
                                                      const BackupPolicy& policy);

// Renames `from` to `to`, both names in the directory `dir_fd`. Without `replace`, an
// existing `to` is never replaced, even one that appeared a moment ago
// (RENAME_NOREPLACE, or link+unlink where the file system lacks it): "backup path TO
// exists; add --force to replace it". With `replace`, a symlink at `to` is replaced,
// never followed.
[[nodiscard]] Result<void> rename_into_place(int dir_fd, const std::string& from,
                                             const std::string& to, bool replace);

// An online, consistent copy of the database at `source` into `target`, checked by
// check_backup_target first (see above). Returns the bytes written.
[[nodiscard]] Result<uint64_t> backup_database(const std::string& source, const std::string& target,
                                               const BackupPolicy& policy);

}  // namespace farmhand::daemon

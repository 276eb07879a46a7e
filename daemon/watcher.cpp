#include "daemon/watcher.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <unordered_set>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fnmatch.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/logging.h"
#include "common/sequence.h"

namespace farmhand::daemon {

namespace {

// Every change that can make a group active, plus the events that end a watch.
constexpr uint32_t kWatchMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |
                                IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF |
                                IN_ONLYDIR | IN_EXCL_UNLINK;

spdlog::logger& watcher_log() {
  static const std::shared_ptr<spdlog::logger> logger = common::logger("watcher");
  return *logger;
}

struct FdCloser {
  int fd = -1;

  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};

bool ends_with(std::string_view text, std::string_view end) {
  return text.size() >= end.size() && text.substr(text.size() - end.size()) == end;
}

// Renderers and our converter write "name.tmp" / "name.part" / "name~" and rename when done;
// editors and rsync write ".name".
bool hidden_or_temporary(std::string_view name) {
  return name.empty() || name.front() == '.' || ends_with(name, ".tmp") ||
         ends_with(name, ".part") || name.back() == '~';
}

std::string join(const std::string& dir, std::string_view name) {
  std::string path = dir;
  if (path.empty() || path.back() != '/') path += '/';
  path += name;
  return path;
}

// "/a/b/" -> "/a/b"; "/" stays.
std::string normalized(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

bool is_under(const std::string& path, const std::string& root) {
  if (path == root) return true;
  if (root == "/") return true;
  return path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
         path[root.size()] == '/';
}

// Files of one folder are grouped as scan_directory groups them before splitting by padding:
// by prefix and suffix around the frame number, or by name for a file without one. A name
// holds no '\0', so the two kinds cannot collide.
std::string group_key(std::string_view name) {
  const std::optional<common::FrameInName> frame = common::parse_frame_in_name(name);
  if (!frame) return std::string(name);
  std::string key(frame->prefix);
  key += '\0';
  key += frame->suffix;
  return key;
}

// The name of the file at position `index` of a scanned sequence (index 0 for a single file).
std::string file_name(const common::Sequence& sequence, uint64_t index) {
  if (sequence.is_single_file()) return sequence.pattern.prefix;
  return sequence.pattern.prefix +
         common::format_frame_number(sequence.frames.frame_at(index), sequence.pattern.padding) +
         sequence.pattern.suffix;
}

std::string group_key(const common::Sequence& sequence) {
  if (sequence.is_single_file()) return sequence.pattern.prefix;
  return sequence.pattern.prefix + '\0' + sequence.pattern.suffix;
}

Error watch_error(const std::string& path, int err) {
  if (err == ENOSPC) {
    return Error{ErrorCode::kUnavailable,
                 "cannot watch " + printable(path) +
                     ": inotify watch limit reached (raise fs.inotify.max_user_watches)"};
  }
  return Error{err == ENOENT || err == ENOTDIR ? ErrorCode::kNotFound : ErrorCode::kIo,
               "cannot watch " + printable(path) + ": " + std::strerror(err)};
}

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The subfolders of `path` worth watching: not hidden or temporary, not symlinks.
std::vector<std::string> subfolders(const std::string& path) {
  std::vector<std::string> out;
  std::unique_ptr<DIR, DirCloser> handle(::opendir(path.c_str()));
  if (!handle) return out;
  const int dir_fd = ::dirfd(handle.get());
  while (const dirent* entry = ::readdir(handle.get())) {
    const std::string_view name(entry->d_name);
    if (hidden_or_temporary(name)) continue;
    bool is_dir = entry->d_type == DT_DIR;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat st {};

      is_dir =
          ::fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (is_dir) out.push_back(join(path, name));
  }
  return out;
}

// One sequence of a group as it is on disk now, after filtering and stat.
struct Current {
  common::FrameSet frames;
  uint64_t file_count = 0;
  uint64_t total_bytes = 0;
  int64_t newest_mtime_ns = 0;
};

}  // namespace

FolderWatcher::FolderWatcher(std::vector<WatchSpec> specs, int fd)
    : specs_(std::move(specs)), fd_(fd) {}

FolderWatcher::~FolderWatcher() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<FolderWatcher>> FolderWatcher::create(std::vector<WatchSpec> specs,
                                                             Clock::time_point now) {
  for (WatchSpec& spec : specs) {
    if (spec.dir.empty() || spec.dir.front() != '/') {
      return fail(ErrorCode::kInvalidArgument,
                  "watched folder " + printable(spec.dir) + " is not an absolute path");
    }
    spec.dir = normalized(spec.dir);
    if (spec.settle < std::chrono::milliseconds(0)) spec.settle = std::chrono::milliseconds(0);
  }
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    return fail(ErrorCode::kUnavailable,
                std::string("cannot start inotify: ") + std::strerror(errno));
  }
  std::unique_ptr<FolderWatcher> watcher(new FolderWatcher(std::move(specs), fd));
  for (size_t i = 0; i < watcher->specs_.size(); ++i) {
    const std::string& root = watcher->specs_[i].dir;

    struct stat st {};

    if (::stat(root.c_str(), &st) != 0) {
      const int err = errno;
      return fail(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                  "watched folder " + printable(root) + ": " + std::strerror(err));
    }
    if (!S_ISDIR(st.st_mode)) {
      return fail(ErrorCode::kInvalidArgument,
                  "watched folder " + printable(root) + " is not a directory");
    }
    if (::access(root.c_str(), R_OK | X_OK) != 0) {
      return fail(ErrorCode::kIo,
                  "watched folder " + printable(root) + ": " + std::strerror(errno));
    }
    if (Result<void> added = watcher->add_tree(i, root, now, true, nullptr); !added) {
      return fail(std::move(added.error()));
    }
  }
  watcher_log().info("watching folders specs={} folders={}", watcher->specs_.size(),
                     watcher->dirs_.size());
  return watcher;
}

// ---------------------------------------------------------------- watches

Result<uint64_t> FolderWatcher::add_dir(size_t watch, const std::string& path) {
  if (auto it = by_path_.find(path); it != by_path_.end()) {
    for (uint64_t id : it->second) {
      if (dirs_.at(id).watch == watch) return id;
    }
  }
  const bool root = path == specs_[watch].dir;
  // Roots may be symlinks the user configured; below them, links are not followed.
  const uint32_t mask = kWatchMask | (root ? 0 : IN_DONT_FOLLOW);
  const int wd = ::inotify_add_watch(fd_, path.c_str(), mask);
  if (wd < 0) return fail(watch_error(path, errno));
  const uint64_t id = next_dir_id_++;
  Dir& dir = dirs_[id];
  dir.path = path;
  dir.watch = watch;
  dir.wd = wd;
  by_path_[path].push_back(id);
  by_wd_[wd].push_back(id);
  return id;
}

Result<void> FolderWatcher::add_tree(size_t watch, const std::string& path, Clock::time_point now,
                                     bool settle_old, std::vector<uint64_t>* visited) {
  Result<uint64_t> top = add_dir(watch, path);
  if (!top) return fail(std::move(top.error()));
  // Watch first, then list: a file written between the two is seen by both, never by neither.
  std::vector<uint64_t> pending{*top};
  while (!pending.empty()) {
    const uint64_t id = pending.back();
    pending.pop_back();
    if (visited != nullptr) visited->push_back(id);
    if (specs_[watch].recursive) {
      for (const std::string& sub : subfolders(dirs_.at(id).path)) {
        Result<uint64_t> child = add_dir(watch, sub);
        if (child) {
          pending.push_back(*child);
        } else if (child.error().code != ErrorCode::kNotFound) {
          watcher_log().warn("watch failed watch={} path={} reason=\"{}\"", watch, sub,
                             child.error().reason);
          schedule_retry(watch, sub, now);
        }
      }
    }
    scan_dir(id, now, settle_old);
  }
  return {};
}

void FolderWatcher::drop_dir(uint64_t id) {
  auto it = dirs_.find(id);
  if (it == dirs_.end()) return;
  const Dir& dir = it->second;
  if (auto p = by_path_.find(dir.path); p != by_path_.end()) {
    std::erase(p->second, id);
    if (p->second.empty()) by_path_.erase(p);
  }
  if (auto w = by_wd_.find(dir.wd); w != by_wd_.end()) {
    std::erase(w->second, id);
    if (w->second.empty()) {
      by_wd_.erase(w);
      ::inotify_rm_watch(fd_, dir.wd);  // EINVAL when the kernel already dropped it: fine
    }
  }
  dirs_.erase(it);
}

void FolderWatcher::drop_tree(size_t watch, const std::string& path) {
  std::vector<uint64_t> doomed;
  for (const auto& [id, dir] : dirs_) {
    if (dir.watch == watch && is_under(dir.path, path)) doomed.push_back(id);
  }
  for (uint64_t id : doomed) drop_dir(id);
  std::erase_if(retries_, [&](const Retry& retry) {
    return retry.watch == watch && retry.path != specs_[watch].dir && is_under(retry.path, path);
  });
}

void FolderWatcher::schedule_retry(size_t watch, const std::string& path, Clock::time_point now) {
  for (const Retry& retry : retries_) {
    if (retry.watch == watch && retry.path == path) return;
  }
  retries_.push_back(Retry{watch, path});
  if (!retry_at_) retry_at_ = now + kRetryInterval;
}

void FolderWatcher::run_retries(Clock::time_point now) {
  if (!retry_at_ || *retry_at_ > now) return;
  retry_at_.reset();
  std::vector<Retry> due;
  due.swap(retries_);
  for (Retry& retry : due) {
    const bool root = retry.path == specs_[retry.watch].dir;
    if (!root) {
      // A subfolder is retried only while its parent is still watched and it still exists.
      const std::string parent = retry.path.substr(0, retry.path.rfind('/'));
      bool parent_watched = false;
      if (auto it = by_path_.find(parent.empty() ? "/" : parent); it != by_path_.end()) {
        for (uint64_t id : it->second) parent_watched |= dirs_.at(id).watch == retry.watch;
      }
      if (!parent_watched) continue;
    }
    Result<void> added = add_tree(retry.watch, retry.path, now, false, nullptr);
    if (added) {
      watcher_log().info("watch restored watch={} path={}", retry.watch, retry.path);
    } else if (!root && added.error().code == ErrorCode::kNotFound) {
      continue;  // the subfolder is gone: nothing to watch
    } else {
      watcher_log().debug("watch retry failed watch={} path={} reason=\"{}\"", retry.watch,
                          retry.path, added.error().reason);
      schedule_retry(retry.watch, retry.path, now);
    }
  }
}

// ---------------------------------------------------------------- activity

bool FolderWatcher::eligible(size_t watch, std::string_view name) const {
  if (hidden_or_temporary(name)) return false;
  const std::vector<std::string>& include = specs_[watch].include;
  if (include.empty()) return true;
  const std::string name_z(name);
  return std::any_of(include.begin(), include.end(), [&](const std::string& glob) {
    return ::fnmatch(glob.c_str(), name_z.c_str(), 0) == 0;
  });
}

void FolderWatcher::touch(uint64_t id, const std::string& key, Clock::time_point at) {
  Dir& dir = dirs_.at(id);
  Group& group = dir.groups[key];
  group.active_at = std::max(group.active_at, at);
  if (!group.queued) {
    group.queued = true;
    queue_.push(QueueEntry{group.active_at + specs_[dir.watch].settle, id, key});
  }
}

void FolderWatcher::scan_dir(uint64_t id, Clock::time_point now, bool settle_old) {
  const Dir& dir = dirs_.at(id);
  const size_t watch = dir.watch;
  // Groups already known are looked at again too: files may have gone while unwatched.
  std::vector<std::string> known;
  known.reserve(dir.groups.size());
  for (const auto& [key, group] : dir.groups) known.push_back(key);
  for (const std::string& key : known) touch(id, key, now);

  Result<std::vector<common::Sequence>> found = common::scan_directory(dir.path);
  if (!found) {
    watcher_log().warn("folder scan failed watch={} path={} reason=\"{}\"", watch, dir.path,
                       found.error().reason);
    return;
  }
  const std::chrono::milliseconds settle = specs_[watch].settle;
  const int64_t wall_now = settle_old ? wall_now_ns() : 0;
  const int64_t settle_ns = std::chrono::nanoseconds(settle).count();
  FdCloser dir_fd;
  if (settle_old) dir_fd.fd = ::open(dir.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  for (const common::Sequence& sequence : *found) {
    std::string key = group_key(sequence);
    if (!settle_old) {
      // Eligibility per file is decided when the group settles; here the name is enough.
      if (!hidden_or_temporary(file_name(sequence, 0))) touch(id, key, now);
      continue;
    }
    // Initial scan: a group whose newest eligible file is older than settle is due at once.
    int64_t newest = 0;
    bool any = false;
    const uint64_t count = sequence.is_single_file() ? 1 : sequence.count();
    for (uint64_t i = 0; i < count; ++i) {
      const std::string name = file_name(sequence, i);
      if (!eligible(watch, name)) continue;

      struct stat st {};

      if (dir_fd.fd < 0 || ::fstatat(dir_fd.fd, name.c_str(), &st, 0) != 0) continue;
      any = true;
      newest = std::max(newest, mtime_ns(st));
    }
    if (!any) continue;
    const bool old = wall_now - newest >= settle_ns;
    touch(id, key, old ? now - settle : now);
  }
}

// ---------------------------------------------------------------- events

void FolderWatcher::on_readable(Clock::time_point now) {
  // Aligned for struct inotify_event; 64 KiB holds hundreds of events per read.
  alignas(struct inotify_event) char buffer[64 * 1024];
  while (true) {
    const ssize_t got = ::read(fd_, buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        watcher_log().warn("inotify read failed reason=\"{}\"", std::strerror(errno));
      }
      return;
    }
    if (got == 0) return;
    for (ssize_t offset = 0; offset < got;) {
      const auto* event = reinterpret_cast<const struct inotify_event*>(buffer + offset);
      const std::string_view name =
          event->len > 0 ? std::string_view(event->name, ::strnlen(event->name, event->len))
                         : std::string_view();
      handle_event(event->wd, event->mask, name, now);
      offset += static_cast<ssize_t>(sizeof(struct inotify_event) + event->len);
    }
  }
}

void FolderWatcher::handle_event(int wd, uint32_t mask, std::string_view name,
                                 Clock::time_point now) {
  if (mask & IN_Q_OVERFLOW) {
    watcher_log().warn("inotify queue overflowed rescan folders={}", dirs_.size());
    rescan(now);
    return;
  }
  auto found = by_wd_.find(wd);
  if (found == by_wd_.end()) return;                // a watch already dropped
  const std::vector<uint64_t> ids = found->second;  // handlers below may change by_wd_
  for (uint64_t id : ids) {
    auto it = dirs_.find(id);
    if (it == dirs_.end()) continue;
    const size_t watch = it->second.watch;
    const std::string path = it->second.path;
    const bool root = path == specs_[watch].dir;

    if (mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
      if (root) {
        // The root went away (or moved, so event paths would be wrong): watch it again when
        // it is back.
        watcher_log().warn("watched folder lost watch={} path={}", watch, path);
        drop_tree(watch, path);
        schedule_retry(watch, path, now);
      } else if (mask & (IN_IGNORED | IN_DELETE_SELF | IN_UNMOUNT)) {
        drop_dir(id);
      }
      // A moved subfolder is handled by its parent's IN_MOVED_FROM / IN_MOVED_TO.
      continue;
    }
    if (name.empty()) continue;
    if (mask & IN_ISDIR) {
      if (hidden_or_temporary(name)) continue;
      const std::string sub = join(path, name);
      if (mask & (IN_CREATE | IN_MOVED_TO)) {
        if (!specs_[watch].recursive) continue;
        // Files may already be inside (a folder moved in, or written before the watch).
        Result<void> added = add_tree(watch, sub, now, false, nullptr);
        if (!added && added.error().code != ErrorCode::kNotFound) {
          watcher_log().warn("watch failed watch={} path={} reason=\"{}\"", watch, sub,
                             added.error().reason);
          schedule_retry(watch, sub, now);
        }
      } else if (mask & (IN_DELETE | IN_MOVED_FROM)) {
        drop_tree(watch, sub);
      }
      continue;
    }
    if (mask & (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM)) {
      if (eligible(watch, name)) touch(id, group_key(name), now);
    }
  }
}

void FolderWatcher::rescan(Clock::time_point now) {
  for (size_t watch = 0; watch < specs_.size(); ++watch) {
    const std::string& root = specs_[watch].dir;
    bool watched = false;
    if (auto it = by_path_.find(root); it != by_path_.end()) {
      for (uint64_t id : it->second) watched |= dirs_.at(id).watch == watch;
    }
    if (!watched) continue;  // waiting for a retry
    std::vector<uint64_t> visited;
    Result<void> added = add_tree(watch, root, now, false, &visited);
    if (!added) {
      watcher_log().warn("watched folder lost watch={} path={} reason=\"{}\"", watch, root,
                         added.error().reason);
      drop_tree(watch, root);
      schedule_retry(watch, root, now);
      continue;
    }
    // Folders not reached by the walk are gone (or moved away): stop watching them.
    const std::unordered_set<uint64_t> seen(visited.begin(), visited.end());
    std::vector<uint64_t> gone;
    for (const auto& [id, dir] : dirs_) {
      if (dir.watch == watch && !seen.contains(id)) gone.push_back(id);
    }
    for (uint64_t id : gone) drop_dir(id);
  }
}

// ---------------------------------------------------------------- settling

std::vector<SettledSequence> FolderWatcher::take_settled(Clock::time_point now) {
  run_retries(now);

  // The groups due now, by folder, so each folder is listed once.
  std::map<uint64_t, std::vector<std::string>> due;
  while (!queue_.empty() && queue_.top().due <= now) {
    QueueEntry entry = queue_.top();
    queue_.pop();
    auto dir = dirs_.find(entry.dir);
    if (dir == dirs_.end()) continue;
    auto group = dir->second.groups.find(entry.group);
    if (group == dir->second.groups.end()) continue;
    const Clock::time_point settled_at = group->second.active_at + specs_[dir->second.watch].settle;
    if (settled_at > entry.due) {
      // Touched since it was queued: wait for the new time (may still be before now).
      entry.due = settled_at;
      queue_.push(std::move(entry));
      continue;
    }
    group->second.queued = false;
    due[entry.dir].push_back(std::move(entry.group));
  }

  std::vector<SettledSequence> out;
  for (auto& [id, keys] : due) settle_groups(id, keys, out);
  return out;
}

void FolderWatcher::settle_groups(uint64_t id, const std::vector<std::string>& keys,
                                  std::vector<SettledSequence>& out) {
  Dir& dir = dirs_.at(id);
  const size_t watch = dir.watch;
  std::unordered_map<std::string, std::vector<const common::Sequence*>> by_key;
  for (const std::string& key : keys) by_key[key];

  Result<std::vector<common::Sequence>> found = common::scan_directory(dir.path);
  if (!found) {
    // The folder went away; its IN_IGNORED drops it. Nothing to report.
    watcher_log().debug("folder scan failed watch={} path={} reason=\"{}\"", watch, dir.path,
                        found.error().reason);
    found = std::vector<common::Sequence>();
  }
  for (const common::Sequence& sequence : *found) {
    if (auto it = by_key.find(group_key(sequence)); it != by_key.end()) {
      it->second.push_back(&sequence);
    }
  }
  FdCloser dir_fd;
  dir_fd.fd = ::open(dir.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  for (const std::string& key : keys) {
    Group& group = dir.groups.at(key);
    std::map<std::string, Current> current;  // by pattern string
    for (const common::Sequence* sequence : by_key[key]) {
      const bool single = sequence->is_single_file();
      const uint64_t count = single ? 1 : sequence->count();
      Current now_on_disk;
      std::vector<int64_t> kept;
      kept.reserve(single ? 0 : count);
      for (uint64_t i = 0; i < count; ++i) {
        const std::string name = file_name(*sequence, i);
        if (!eligible(watch, name)) continue;

        struct stat st {};

        if (dir_fd.fd < 0 || ::fstatat(dir_fd.fd, name.c_str(), &st, 0) != 0) continue;
        if (!S_ISREG(st.st_mode)) continue;  // a dangling link, a fifo
        ++now_on_disk.file_count;
        now_on_disk.total_bytes += static_cast<uint64_t>(st.st_size);
        now_on_disk.newest_mtime_ns = std::max(now_on_disk.newest_mtime_ns, mtime_ns(st));
        if (!single) kept.push_back(sequence->frames.frame_at(i));
      }
      if (now_on_disk.file_count == 0) continue;
      if (!single) {
        if (kept.size() == count) {
          now_on_disk.frames = sequence->frames;
        } else {
          // Some frames filtered out or gone: the frame set of those left, as runs.
          std::sort(kept.begin(), kept.end());
          std::vector<common::FrameRange> runs;
          for (int64_t frame : kept) {
            if (!runs.empty() && runs.back().last() + 1 == frame) {
              ++runs.back().count;
            } else {
              runs.push_back(common::FrameRange{frame, 1, 1});
            }
          }
          Result<common::FrameSet> frames = common::FrameSet::from_ranges(std::move(runs));
          if (!frames) continue;  // cannot happen for distinct ascending frames
          now_on_disk.frames = std::move(*frames);
        }
      }
      current[sequence->pattern.to_string(common::PaddingStyle::kHash)] = std::move(now_on_disk);
    }

    for (auto& [pattern, state] : current) {
      auto previous = group.reported.find(pattern);
      bool changed = previous == group.reported.end() ||
                     state.newest_mtime_ns > previous->second.newest_mtime_ns;
      for (uint64_t i = 0; !changed && i < state.frames.size(); ++i) {
        changed = !previous->second.frames.contains(state.frames.frame_at(i));
      }
      if (!changed) continue;  // the same, or only files lost: nothing new to publish
      SettledSequence settled;
      settled.watch = watch;
      settled.pattern = pattern;
      settled.frames = state.frames.empty() ? std::string() : state.frames.to_string();
      settled.file_count = state.file_count;
      settled.total_bytes = state.total_bytes;
      settled.signature =
          fmt::format("{}|{}|{}|{}|{}", settled.pattern, settled.frames, settled.file_count,
                      settled.total_bytes, state.newest_mtime_ns);
      watcher_log().debug("sequence settled watch={} path={} frames={} files={} bytes={}", watch,
                          settled.pattern, settled.frames, settled.file_count, settled.total_bytes);
      out.push_back(std::move(settled));
    }
    group.reported.clear();
    for (auto& [pattern, state] : current) {
      group.reported.emplace(pattern, Reported{std::move(state.frames), state.newest_mtime_ns});
    }
    if (group.reported.empty() && !group.queued) dir.groups.erase(key);
  }
}

std::optional<FolderWatcher::Clock::time_point> FolderWatcher::next_deadline() const {
  std::optional<Clock::time_point> next = retry_at_;
  if (!queue_.empty() && (!next || queue_.top().due < *next)) next = queue_.top().due;
  return next;
}

}  // namespace farmhand::daemon

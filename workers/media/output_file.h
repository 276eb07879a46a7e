// OutputFile: how the media process puts an output in place without destroying
// a source or leaving its allowed root.
//
// The output's directory is opened from the root the broker resolved at submit
// (media::Request.output_root / output_dir), one component at a time with
// O_NOFOLLOW, creating missing directories beneath it: a directory replaced by
// a symlink after submit fails the task ("cannot write /p/out/a.jpg: /p/out is
// a symlink") instead of sending the output elsewhere. Without a root (a
// request from an older broker, or a direct call) the output's parent, which
// must exist, is opened as written. The frame is written to a fresh temporary file created in
// that directory (O_EXCL|O_NOFOLLOW); OpenImageIO and libav open it by its
// /proc/self/fd path, so its name can not be swapped under them. commit()
// renames it over the target with renameat(2) in the same directory, after
// checking that the target is not (same device and inode) a file the task
// reads. Destroyed uncommitted, the temporary file is removed.
//
// Temporary names are `.farmhand-tmp.HOST.PID.N.NAME`: HOST a hash of the host
// name, PID the writing process. The first time a process opens a directory it
// sweeps the temporaries a killed farmhand-media left there: only those of
// this host whose PID is not a live farmhand process.
//
// Thread-safe: an OutputFile is owned by one thread; the record of swept
// directories is guarded by a mutex.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace farmhand::media {

// Where the broker placed an output: `dir` (resolved at submit, symlink-free)
// beneath `root`. Empty root: the output's parent directory as written.
struct OutputPlace {
  std::string root;
  std::string dir;
};

class OutputFile {
 public:
  // Opens the output's directory and creates the temporary file. Errors name
  // the output: "cannot write /p/out/a.jpg: /p/out is a symlink".
  [[nodiscard]] static Result<OutputFile> create(const std::string& output,
                                                 const OutputPlace& place);

  OutputFile(OutputFile&& other) noexcept;
  OutputFile& operator=(OutputFile&&) = delete;
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();

  // The temporary file by a path that reaches the open file, whatever happens
  // to its name: hand it to OpenImageIO or libav.
  const std::string& write_path() const { return write_path_; }

  // Renames the temporary file over the output, unless the output exists and
  // is one of `reads` (the task's inputs and OCIO config): then it fails with
  // "output X is the task's input Y: a job never overwrites what it reads" and
  // the input is left untouched.
  [[nodiscard]] Result<void> commit(const std::vector<std::string>& reads);

  // After a failed write: "No space left on device" when the output's file
  // system is full, "File too large (the file size limit is N bytes)" when the
  // file reached the process's file size limit (writers such as OpenEXR lose
  // errno), else empty.
  std::string full_disk() const;

 private:
  OutputFile(std::string output, std::string name, int dir_fd, int file_fd, std::string temp_name);

  std::string output_;
  std::string name_;
  int dir_fd_ = -1;
  int file_fd_ = -1;
  std::string temp_name_;
  std::string write_path_;
  bool committed_ = false;
};

// The temporary name prefix of this host and process, for tests:
// ".farmhand-tmp.HOST.PID.".
std::string temp_prefix();

}  // namespace farmhand::media

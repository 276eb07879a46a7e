#include "common/logging.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>

#include "common/result.h"

namespace farmhand::common {

namespace {

spdlog::level::level_enum g_level = spdlog::level::info;

// True when stderr is the journal stream systemd set up for this service:
// JOURNAL_STREAM holds "DEV:INODE" of that stream (inherited by children, so it
// is compared with what stderr is now).
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr || *stream == '\0') return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st = {};
  if (fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

// %* writes the line's syslog priority as "<N>", which journald strips and
// stores, so `journalctl -p warning` filters farmhand's lines by level.
class SyslogPriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    char digit = '6';  // info
    if (msg.level <= spdlog::level::debug) digit = '7';
    if (msg.level == spdlog::level::warn) digit = '4';
    if (msg.level == spdlog::level::err) digit = '3';
    if (msg.level == spdlog::level::critical) digit = '2';
    const char text[] = {'<', digit, '>'};
    dest.append(text, text + sizeof(text));
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

// Lays a record out with `inner` after escaping its message (printable()): the
// message quotes names, paths and reasons users and workers chose, and a record
// is one line whatever they hold, with no byte a terminal or journald acts on.
class EscapingFormatter : public spdlog::formatter {
 public:
  explicit EscapingFormatter(std::unique_ptr<spdlog::formatter> inner) : inner_(std::move(inner)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    const bool plain = std::all_of(payload.begin(), payload.end(), [](char c) {
      const auto byte = static_cast<unsigned char>(c);
      return byte >= 0x20 && byte < 0x7f;
    });
    if (plain) {
      inner_->format(msg, dest);
      return;
    }
    const std::string escaped = printable(payload, kWholeText);
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    inner_->format(copy, dest);
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<EscapingFormatter>(inner_->clone());
  }

 private:
  std::unique_ptr<spdlog::formatter> inner_;
};

constexpr const char* kPlainPattern = "%Y-%m-%dT%H:%M:%S.%e %n %l: %v";

void set_escaping_formatter(std::unique_ptr<spdlog::pattern_formatter> pattern) {
  spdlog::set_formatter(std::make_unique<EscapingFormatter>(std::move(pattern)));
}

// Loggers made before setup_logging (or without it, in tests) escape too.
std::once_flag g_default_formatter;

void ensure_escaping_formatter() {
  std::call_once(g_default_formatter, [] {
    set_escaping_formatter(std::make_unique<spdlog::pattern_formatter>(kPlainPattern));
  });
}

}  // namespace

void setup_logging(const std::string& level) {
  g_level = spdlog::level::from_str(level);
  if (g_level == spdlog::level::off && level != "off") g_level = spdlog::level::info;
  spdlog::set_level(g_level);
  std::call_once(g_default_formatter, [] {});  // chosen here: loggers made later keep it
  if (stderr_is_journal()) {
    // journald stamps each line itself and reads the level from the "<N>" prefix.
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<SyslogPriorityFlag>('*').set_pattern("%*%n %l: %v");
    set_escaping_formatter(std::move(formatter));
  } else {
    set_escaping_formatter(std::make_unique<spdlog::pattern_formatter>(kPlainPattern));
  }
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(g_level); });
}

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  auto existing = spdlog::get(component);
  if (existing) return existing;
  ensure_escaping_formatter();
  auto created = spdlog::stderr_logger_st(component);
  created->set_level(g_level);
  return created;
}

}  // namespace farmhand::common

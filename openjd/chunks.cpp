#include "openjd/chunks.h"

#include <fmt/format.h>

namespace farmhand::openjd {
namespace {

__extension__ typedef unsigned __int128 Wide;  // i * chunks, which may pass 2^64

// b - a for a < b, exact over the whole int64 range (at most 2^64 - 1).
uint64_t gap(int64_t a, int64_t b) {
  return static_cast<uint64_t>(b) - static_cast<uint64_t>(a);
}

}  // namespace

std::vector<uint64_t> chunk_sizes(uint64_t task_count, uint64_t count) {
  if (count == 0) return {};
  if (task_count == 0) task_count = 1;
  const uint64_t chunks = count / task_count + (count % task_count != 0 ? 1 : 0);
  const uint64_t small = count / chunks;
  const uint64_t leftover = count % chunks;
  std::vector<uint64_t> sizes(chunks, small);
  // The larger chunks spread evenly over the list, not bunched at its start.
  // (i * chunks / leftover without overflow: both are at most `count`.)
  for (uint64_t i = 0; i < leftover; ++i) {
    const auto at = static_cast<uint64_t>((static_cast<Wide>(i) * chunks) / leftover);
    ++sizes[at];
  }
  return sizes;
}

std::vector<std::string> contiguous_chunks(uint64_t task_count,
                                           const std::vector<int64_t>& values) {
  std::vector<std::string> out;
  for (size_t start = 0; start < values.size();) {
    size_t end = start + 1;  // one past the run of consecutive integers
    while (end < values.size() && values[end - 1] != INT64_MAX &&
           values[end] == values[end - 1] + 1) {
      ++end;
    }
    int64_t first = values[start];
    for (uint64_t size : chunk_sizes(task_count, end - start)) {
      const int64_t last = first + static_cast<int64_t>(size - 1);
      out.push_back(fmt::format("{}-{}", first, last));
      if (last != INT64_MAX) first = last + 1;
    }
    start = end;
  }
  return out;
}

std::vector<std::string> noncontiguous_chunks(uint64_t task_count,
                                              const std::vector<int64_t>& values) {
  std::vector<std::string> out;
  size_t start = 0;
  for (uint64_t size : chunk_sizes(task_count, values.size())) {
    out.push_back(range_expression_of(
        std::vector<int64_t>(values.begin() + static_cast<std::ptrdiff_t>(start),
                             values.begin() + static_cast<std::ptrdiff_t>(start + size))));
    start += size;
  }
  return out;
}

std::string range_expression_of(const std::vector<int64_t>& values) {
  std::string out;
  auto write = [&out](int64_t first, int64_t last, uint64_t step, size_t length) {
    if (!out.empty()) out += ',';
    if (length == 1) {
      out += fmt::format("{}", first);
    } else if (length == 2) {
      out += fmt::format("{},{}", first, last);
    } else if (step == 1) {
      out += fmt::format("{}-{}", first, last);
    } else {
      out += fmt::format("{}-{}:{}", first, last, step);
    }
  };
  for (size_t i = 0; i < values.size();) {
    const int64_t first = values[i];
    if (i + 1 == values.size()) {
      write(first, first, 1, 1);
      break;
    }
    const uint64_t step = gap(first, values[i + 1]);
    size_t j = i + 1;  // the run's last index
    while (j + 1 < values.size() && gap(values[j], values[j + 1]) == step) ++j;
    write(first, values[j], step, j - i + 1);
    i = j + 1;
  }
  return out;
}

}  // namespace farmhand::openjd

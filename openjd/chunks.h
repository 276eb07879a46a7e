// CHUNK[INT] task parameters (the TASK_CHUNKING extension): how a step's
// integer values are split into chunks, and how a set of integers is written
// as a range expression.
//
// Chunks are balanced: N values with a default task count of C make
// ceil(N / C) chunks whose sizes differ by at most one (1-12 in chunks of 5 is
// 1-4, 5-8, 9-12, not 1-5, 6-10, 11-12), so the last chunk is never a straggler.
// A CONTIGUOUS chunk is always "first-last" (a single value is "5-5") and never
// spans a gap in the values; a NONCONTIGUOUS chunk is any range expression.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace farmhand::openjd {

// Sizes of the chunks `count` values make with `task_count` values a chunk
// (at least 1), in order: each is floor or ceil of the mean.
std::vector<uint64_t> chunk_sizes(uint64_t task_count, uint64_t count);

// `values` (ascending, distinct) in chunks that never span a gap: each run of
// consecutive integers is chunked on its own. Each chunk is "first-last".
std::vector<std::string> contiguous_chunks(uint64_t task_count, const std::vector<int64_t>& values);

// `values` (ascending, distinct) in chunks of balanced sizes, each written as
// a range expression (range_expression_of).
std::vector<std::string> noncontiguous_chunks(uint64_t task_count,
                                              const std::vector<int64_t>& values);

// The canonical range expression of a set of integers (ascending, distinct):
// runs of a constant step, greedily from the smallest value; a run of one value
// is "7", of two "7,8", of more "1-5" or "1-9:2"; runs joined by commas.
std::string range_expression_of(const std::vector<int64_t>& values);

}  // namespace farmhand::openjd

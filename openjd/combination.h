// OpenJD combination expressions (2023-09, 3.4.3): how a step's task
// parameters combine into its parameter space.
//
//   <CombinationExpr> ::= <CombinationExpr> '*' <Element> | <Element>
//   <Element>         ::= '(' <CombinationExpr> [',' <CombinationExpr>]... ')' | <Identifier>
//
// `A * B` is every pair (row-major: B moves fastest); `(A, B)` pairs the i-th
// values of equally long members. Parsing only: the validator checks names
// and lengths, job creation expands the tree. Pure, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace farmhand::openjd {

struct CombNode {
  std::string name;                // a parameter, when `children` is empty
  std::vector<CombNode> children;  // the factors of a product, or the members of a group
  bool group = false;              // ( a, b ): associative
  bool product = false;
};

// The tree of `text`; a product or group of one is its member. The error
// reason names the rule and the character: `expected "," or ")" at character 7`.
[[nodiscard]] Result<CombNode> parse_combination(std::string_view text);

}  // namespace farmhand::openjd

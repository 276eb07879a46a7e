#include "openjd/combination.h"

#include <cctype>

#include "openjd/format_string.h"
#include <fmt/format.h>

namespace farmhand::openjd {
namespace {

class CombinationParser {
 public:
  explicit CombinationParser(std::string_view text) : text_(text) {}

  Result<CombNode> parse() {
    auto node = product();
    if (!node) return node;
    skip_ws();
    if (pos_ != text_.size()) return error("unexpected text");
    return node;
  }

 private:
  tl::unexpected<Error> error(std::string_view what) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("{} at character {}", what, pos_ + 1));
  }

  void skip_ws() {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
  }

  Result<CombNode> product() {
    CombNode node;
    node.product = true;
    while (true) {
      auto e = element();
      if (!e) return e;
      node.children.push_back(std::move(*e));
      skip_ws();
      if (pos_ < text_.size() && text_[pos_] == '*') {
        ++pos_;
        continue;
      }
      break;
    }
    if (node.children.size() == 1) return std::move(node.children[0]);
    return node;
  }

  Result<CombNode> element() {
    skip_ws();
    if (pos_ >= text_.size()) return error("expected a parameter name or \"(\"");
    if (text_[pos_] == '(') {
      ++pos_;
      CombNode group;
      group.group = true;
      while (true) {
        auto e = product();
        if (!e) return e;
        group.children.push_back(std::move(*e));
        skip_ws();
        if (pos_ < text_.size() && text_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < text_.size() && text_[pos_] == ')') {
          ++pos_;
          break;
        }
        return error("expected \",\" or \")\"");
      }
      return group;
    }
    const size_t begin = pos_;
    while (pos_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) {
      ++pos_;
    }
    if (pos_ == begin) return error("expected a parameter name or \"(\"");
    CombNode leaf;
    leaf.name = std::string(text_.substr(begin, pos_ - begin));
    if (!is_identifier(leaf.name)) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("\"{}\" is not an identifier", leaf.name));
    }
    return leaf;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

Result<CombNode> parse_combination(std::string_view text) {
  return CombinationParser(text).parse();
}

}  // namespace farmhand::openjd

#include "common/command_template.h"

#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace farmhand::common {
namespace {

using ::testing::HasSubstr;
using Argvs = std::vector<std::vector<std::string>>;
using Params = std::map<std::string, std::string>;

CommandTemplate make_template(std::vector<std::string> argv,
                              std::map<std::string, ParamSpec> params = {}) {
  CommandTemplate tmpl;
  tmpl.name = "render";
  tmpl.argv = std::move(argv);
  tmpl.params = std::move(params);
  return tmpl;
}

FrameSet frames(const std::string& text) {
  auto parsed = FrameSet::parse(text);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().reason;
  return parsed ? *parsed : FrameSet{};
}

TaskContext task_of(const std::string& chunk, uint64_t job = 42, uint64_t task = 7) {
  return TaskContext{job, task, frames(chunk)};
}

Argvs expanded(const CommandTemplate& tmpl, const Params& params, const TaskContext& task) {
  auto argvs = expand_task(tmpl, params, task);
  EXPECT_TRUE(argvs.has_value()) << argvs.error().reason;
  return argvs ? *argvs : Argvs{};
}

std::string error_of(const Result<void>& result) {
  return result ? "<no error>" : result.error().reason;
}

const ParamSpec kScene{"^[A-Za-z0-9_./-]+$", std::nullopt};
const ParamSpec kQuality{"^(low|high)$", "low"};

TEST(CommandTemplateTest, ChunkWithoutFramePlaceholderRunsOnceWithFirstAndLast) {
  const auto tmpl = make_template({"/usr/bin/hython", "render.py", "--frames", "{first}-{last}"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("1-10")),
            (Argvs{{"/usr/bin/hython", "render.py", "--frames", "1-10"}}));
}

TEST(CommandTemplateTest, FramePlaceholderRunsOncePerFrameInChunkOrder) {
  const auto tmpl = make_template({"/bin/echo", "frame", "{frame}"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("12-10")), (Argvs{{"/bin/echo", "frame", "12"},
                                                         {"/bin/echo", "frame", "11"},
                                                         {"/bin/echo", "frame", "10"}}));
}

TEST(CommandTemplateTest, FirstAndLastFollowChunkOrderNotNumericOrder) {
  const auto tmpl = make_template({"r", "{first}", "{last}"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("20-11")), (Argvs{{"r", "20", "11"}}));
}

TEST(CommandTemplateTest, ChunkWideValuesStayTheSameInEveryPerFrameInvocation) {
  const auto tmpl = make_template({"r", "{frame}", "{first}", "{last}", "{frames}"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("5-7")), (Argvs{{"r", "5", "5", "7", "5-7"},
                                                       {"r", "6", "5", "7", "5-7"},
                                                       {"r", "7", "5", "7", "5-7"}}));
}

TEST(CommandTemplateTest, FramesPlaceholderIsTheChunkInFileseqSyntax) {
  const auto tmpl = make_template({"r", "--frames={frames}"});
  const FrameSet chunk = frames("1-9x2");
  EXPECT_EQ(expanded(tmpl, {}, TaskContext{1, 0, chunk}),
            (Argvs{{"r", "--frames=" + chunk.to_string()}}));
}

TEST(CommandTemplateTest, PlaceholdersInsideWordsAreReplacedInPlace) {
  const auto tmpl = make_template({"r", "--frames={first}-{last}", "out.{frame}.exr"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("3-4")),
            (Argvs{{"r", "--frames=3-4", "out.3.exr"}, {"r", "--frames=3-4", "out.4.exr"}}));
}

TEST(CommandTemplateTest, JobAndTaskPlaceholdersAreTheIds) {
  const auto tmpl = make_template({"r", "job-{job}", "{task}"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("1", 42, 7)), (Argvs{{"r", "job-42", "7"}}));
}

TEST(CommandTemplateTest, NegativeFramesArePrintedPlainly) {
  const auto tmpl = make_template({"r", "{frame}", "{first}..{last}"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("-2--1")),
            (Argvs{{"r", "-2", "-2..-1"}, {"r", "-1", "-2..-1"}}));
}

TEST(CommandTemplateTest, ZeroPaddingFormatsFrameNumbersLikeFmt) {
  const auto tmpl = make_template({"r", "out.{frame:04}.exr", "{first:06}", "{last:2}x"});
  EXPECT_EQ(error_of(check_template(tmpl)),
            "bad format in {last:2} (use zero padding like {last:04}) in argv word '{last:2}x' of "
            "command 'render'");

  const auto padded = make_template({"r", "out.{frame:04}.exr", "{first:06}", "{last:03}"});
  EXPECT_EQ(expanded(padded, {}, task_of("7,-7,12345")),
            (Argvs{{"r", "out.0007.exr", "000007", "12345"},
                   {"r", "out.-007.exr", "000007", "12345"},
                   {"r", "out.12345.exr", "000007", "12345"}}));
}

TEST(CommandTemplateTest, FormatIsOnlyAcceptedOnFrameNumbers) {
  const auto tmpl = make_template({"r", "{job:04}"});
  EXPECT_EQ(error_of(check_template(tmpl)),
            "format on {job:04} (only {frame}, {first} and {last} take one) in argv word "
            "'{job:04}' of command 'render'");
  EXPECT_THAT(error_of(check_template(make_template({"{frame:00}"}))), HasSubstr("bad format"));
  EXPECT_THAT(error_of(check_template(make_template({"{frame:021}"}))), HasSubstr("bad format"));
  EXPECT_EQ(error_of(check_template(make_template({"{frame:020}"}))), "<no error>");
}

TEST(CommandTemplateTest, DoubledBracesAreLiteralBraces) {
  const auto tmpl = make_template({"r", "{{frame}}", "{{{frame}}}", "a}}b{{"});
  EXPECT_EQ(expanded(tmpl, {}, task_of("9")), (Argvs{{"r", "{frame}", "{9}", "a}b{"}}));
}

TEST(CommandTemplateTest, UnbalancedBracesAreRejected) {
  EXPECT_EQ(error_of(check_template(make_template({"r", "a{b"}))),
            "unclosed '{' in argv word 'a{b' of command 'render'");
  EXPECT_EQ(error_of(check_template(make_template({"r", "a}b"}))),
            "unmatched '}' in argv word 'a}b' of command 'render'");
  EXPECT_EQ(error_of(check_template(make_template({"r", "{}"}))),
            "empty placeholder {} in argv word '{}' of command 'render'");
  EXPECT_EQ(error_of(check_template(make_template({"r", "{a b}"}))),
            "bad placeholder {a b} in argv word '{a b}' of command 'render'");
}

TEST(CommandTemplateTest, UnknownPlaceholderIsNamed) {
  const auto tmpl = make_template({"r", "--scene", "{scen}"}, {{"scene", kScene}});
  EXPECT_EQ(error_of(check_template(tmpl)), "unknown placeholder {scen} in command 'render'");
  EXPECT_EQ(error_of(check_argv_word(tmpl, "{scene}")), "<no error>");
}

TEST(CommandTemplateTest, BuiltInsAndDeclaredParamsPassTheCheck) {
  const auto tmpl =
      make_template({"r", "{frame}", "{first}", "{last}", "{frames}", "{job}", "{task}", "{scene}"},
                    {{"scene", kScene}});
  EXPECT_EQ(error_of(check_template(tmpl)), "<no error>");
}

TEST(CommandTemplateTest, EmptyArgvIsRejected) {
  EXPECT_EQ(error_of(check_template(make_template({}))), "command 'render' has an empty argv");
}

TEST(CommandTemplateTest, ValidateParamsFillsInDefaults) {
  const auto tmpl =
      make_template({"r", "{scene}", "{quality}"}, {{"scene", kScene}, {"quality", kQuality}});
  auto params = validate_params(tmpl, {{"scene", "sh010/main.hip"}});
  ASSERT_TRUE(params.has_value()) << params.error().reason;
  EXPECT_EQ(*params, (Params{{"scene", "sh010/main.hip"}, {"quality", "low"}}));
  auto overridden = validate_params(tmpl, {{"scene", "a"}, {"quality", "high"}});
  ASSERT_TRUE(overridden.has_value()) << overridden.error().reason;
  EXPECT_EQ(overridden->at("quality"), "high");
}

TEST(CommandTemplateTest, UnknownParamIsRejected) {
  const auto tmpl = make_template({"r"}, {{"quality", kQuality}});
  auto params = validate_params(tmpl, {{"x", "1"}});
  ASSERT_FALSE(params.has_value());
  EXPECT_EQ(params.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(params.error().reason, "unknown param 'x' for command 'render'");
}

TEST(CommandTemplateTest, MissingParamWithoutDefaultIsRejected) {
  const auto tmpl = make_template({"r", "{scene}"}, {{"scene", kScene}});
  auto params = validate_params(tmpl, {});
  ASSERT_FALSE(params.has_value());
  EXPECT_EQ(params.error().reason, "missing param 'scene' for command 'render'");
}

TEST(CommandTemplateTest, ValueNotMatchingThePatternIsRejected) {
  const auto tmpl = make_template({"r", "{scene}"}, {{"scene", kScene}});
  auto params = validate_params(tmpl, {{"scene", "a b"}});
  ASSERT_FALSE(params.has_value());
  EXPECT_EQ(params.error().reason, "param 'scene' value 'a b' does not match ^[A-Za-z0-9_./-]+$");
}

TEST(CommandTemplateTest, PatternMustMatchTheWholeValue) {
  const auto tmpl = make_template({"r", "{n}"}, {{"n", ParamSpec{"[0-9]+", std::nullopt}}});
  EXPECT_TRUE(validate_params(tmpl, {{"n", "123"}}).has_value());
  EXPECT_FALSE(validate_params(tmpl, {{"n", "123; rm -rf /"}}).has_value());
  EXPECT_FALSE(validate_params(tmpl, {{"n", "x123"}}).has_value());
}

TEST(CommandTemplateTest, DefaultPatternRefusesShellMetacharacters) {
  const auto tmpl = make_template({"r", "{v}"}, {{"v", ParamSpec{}}});
  EXPECT_TRUE(validate_params(tmpl, {{"v", "a/b.c,d:e=f+g-h_1"}}).has_value());
  for (const char* value : {"a b", "$(id)", "a;b", "`x`", "a|b", "a\nb", "*"}) {
    EXPECT_FALSE(validate_params(tmpl, {{"v", value}}).has_value()) << value;
  }
}

TEST(CommandTemplateTest, ValuesAreLimitedTo4096BytesWithoutNul) {
  const auto tmpl = make_template({"r", "{v}"}, {{"v", ParamSpec{"^[a\\-]*$", std::nullopt}}});
  EXPECT_TRUE(validate_params(tmpl, {{"v", std::string(4096, 'a')}}).has_value());
  auto too_long = validate_params(tmpl, {{"v", std::string(4097, 'a')}});
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().reason, "param 'v' value is longer than 4096 bytes");
  auto nul = validate_params(tmpl, {{"v", std::string("a\0a", 3)}});
  ASSERT_FALSE(nul.has_value());
  EXPECT_EQ(nul.error().reason, "param 'v' value contains a nul byte");
}

TEST(CommandTemplateTest, LongValuesAndControlBytesAreShortenedInTheReason) {
  const auto tmpl = make_template({"r", "{v}"}, {{"v", ParamSpec{"^[a]*$", std::nullopt}}});
  auto params = validate_params(tmpl, {{"v", "b\n" + std::string(200, 'a')}});
  ASSERT_FALSE(params.has_value());
  EXPECT_EQ(params.error().reason.find('\n'), std::string::npos);
  EXPECT_THAT(params.error().reason, HasSubstr("value 'b\\x0aaaa"));
  EXPECT_LT(params.error().reason.size(), 160u);
}

TEST(CommandTemplateTest, EveryParamProblemIsReportedTogether) {
  const auto tmpl =
      make_template({"r", "{scene}", "{quality}"}, {{"scene", kScene}, {"quality", kQuality}});
  auto params = validate_params(tmpl, {{"quality", "ultra"}, {"x", "1"}});
  ASSERT_FALSE(params.has_value());
  EXPECT_EQ(params.error().reason,
            "unknown param 'x' for command 'render'; param 'quality' value 'ultra' does not match "
            "^(low|high)$; missing param 'scene' for command 'render'");
}

TEST(CommandTemplateTest, InvalidPatternIsReportedNotThrown) {
  EXPECT_THAT(error_of(check_pattern("(unclosed")),
              HasSubstr("pattern '(unclosed' is not a valid regex: "));
  EXPECT_EQ(error_of(check_pattern("^(low|high)$")), "<no error>");
  const auto tmpl = make_template({"r", "{v}"}, {{"v", ParamSpec{"[", std::nullopt}}});
  auto params = validate_params(tmpl, {{"v", "a"}});
  ASSERT_FALSE(params.has_value());
  EXPECT_THAT(params.error().reason, HasSubstr("is not a valid regex"));
}

// A backtracking engine takes time exponential in the value for ^(a+)+$ against
// "aaaa...!" (the standard library's engine ran for hours on 4096 bytes, and overflowed the stack
// on longer values), and the broker checks params on its event loop. RE2 does
// it in linear time: this test finishes at once or not at all.
TEST(CommandTemplateTest, NestedQuantifierPatternAgainstALongValueIsRefusedNotHung) {
  const auto tmpl = make_template({"r", "{v}"}, {{"v", ParamSpec{"^(a+)+$", std::nullopt}}});
  const std::string value = std::string(kMaxParamValueBytes - 1, 'a') + "!";
  auto params = validate_params(tmpl, {{"v", value}});
  ASSERT_FALSE(params.has_value());
  EXPECT_THAT(params.error().reason, HasSubstr("param 'v' value 'aaaa"));
  EXPECT_THAT(params.error().reason, HasSubstr("' does not match ^(a+)+$"));
  EXPECT_TRUE(validate_params(tmpl, {{"v", std::string(kMaxParamValueBytes, 'a')}}).has_value());
}

TEST(CommandTemplateTest, BackreferencesAndLookaroundAreRefusedWithAReason) {
  EXPECT_EQ(error_of(check_pattern("^(a)\\1$")),
            "pattern '^(a)\\1$' is not a valid regex: invalid escape sequence: \\1 "
            "(backreferences are not supported: patterns are matched in linear time)");
  EXPECT_THAT(error_of(check_pattern("^(?!x)")), HasSubstr("lookahead is not supported"));
  EXPECT_THAT(error_of(check_pattern("(?<=a)b")), HasSubstr("lookbehind is not supported"));
}

TEST(CommandTemplateTest, PatternSemanticsStayThoseOfAFullByteMatch) {
  const auto check = [](const std::string& pattern, const std::string& value) {
    const auto tmpl = make_template({"r", "{v}"}, {{"v", ParamSpec{pattern, std::nullopt}}});
    return validate_params(tmpl, {{"v", value}}).has_value();
  };
  EXPECT_TRUE(check("a|ab", "ab"));   // full match, even where the leftmost branch is shorter
  EXPECT_FALSE(check("^a$", "a\n"));  // $ is the end of the value, not before a final newline
  EXPECT_TRUE(check("^\\d{3}-\\w+\\s?$", "123-ab_c "));
  EXPECT_TRUE(check("^(?:low|high)$", "high"));
  EXPECT_TRUE(check("^.{2}$", "\xc3\xa9"));  // bytes: one two-byte character is two
}

TEST(CommandTemplateTest, ParamValuesAreSubstitutedAsIsInsideOneWord) {
  const auto tmpl = make_template({"r", "--scene", "{scene}", "--out=/shots/{scene}.{frame}"},
                                  {{"scene", ParamSpec{"^[a-z ]+$", std::nullopt}}});
  EXPECT_EQ(expanded(tmpl, {{"scene", "two words"}}, task_of("1")),
            (Argvs{{"r", "--scene", "two words", "--out=/shots/two words.1"}}));
}

TEST(CommandTemplateTest, ExpandTaskFillsDefaults) {
  const auto tmpl = make_template({"r", "--quality", "{quality}"}, {{"quality", kQuality}});
  EXPECT_EQ(expanded(tmpl, {}, task_of("1")), (Argvs{{"r", "--quality", "low"}}));
}

TEST(CommandTemplateTest, ExpandTaskRevalidatesParams) {
  const auto tmpl = make_template({"r", "{scene}"}, {{"scene", kScene}});
  auto argvs = expand_task(tmpl, {{"scene", "$(reboot)"}}, task_of("1"));
  ASSERT_FALSE(argvs.has_value());
  EXPECT_EQ(argvs.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(argvs.error().reason, HasSubstr("does not match"));
}

TEST(CommandTemplateTest, ExpandTaskRefusesABadTemplate) {
  auto argvs = expand_task(make_template({"r", "{nope}"}), {}, task_of("1"));
  ASSERT_FALSE(argvs.has_value());
  EXPECT_EQ(argvs.error().reason, "unknown placeholder {nope} in command 'render'");
}

TEST(CommandTemplateTest, EmptyChunkIsRefusedWhenTheTemplateUsesFrames) {
  auto argvs = expand_task(make_template({"r", "{frame}"}), {}, TaskContext{42, 7, FrameSet{}});
  ASSERT_FALSE(argvs.has_value());
  EXPECT_EQ(argvs.error().reason, "task 7 of job 42 has no frames");
}

TEST(CommandTemplateTest, TemplateWithoutFramePlaceholdersRunsOnceEvenForAnEmptyChunk) {
  EXPECT_EQ(expanded(make_template({"/bin/true"}), {}, TaskContext{1, 0, FrameSet{}}),
            (Argvs{{"/bin/true"}}));
}

TEST(CommandTemplateTest, OversizedPerFrameChunkIsRefusedRatherThanBuilt) {
  const auto tmpl = make_template({"r", "{frame}"});
  auto argvs =
      expand_task(tmpl, {}, TaskContext{42, 7, FrameSet::range(1, kMaxInvocationsPerTask + 1)});
  ASSERT_FALSE(argvs.has_value());
  EXPECT_EQ(argvs.error().reason, "task 7 of job 42 would run 100001 invocations (limit 100000)");

  // The same chunk is one invocation when the template does not name {frame}.
  const auto whole = make_template({"r", "{first}-{last}"});
  EXPECT_EQ(expanded(whole, {}, TaskContext{42, 7, FrameSet::range(1, kMaxInvocationsPerTask + 1)}),
            (Argvs{{"r", "1-100001"}}));
}

}  // namespace
}  // namespace farmhand::common

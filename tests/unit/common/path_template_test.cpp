#include "common/path_template.h"

#include <string>
#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace farmhand::common {
namespace {

using ::testing::HasSubstr;

PathVars vars_of(const std::string& path) {
  Result<PathVars> vars = path_vars(path);
  if (!vars) {
    ADD_FAILURE() << "path_vars('" << path << "') failed: " << vars.error().reason;
    return PathVars();
  }
  return *vars;
}

// The expansion, or "error: <reason>".
std::string expand(std::string_view text, const PathVars& vars) {
  Result<std::string> out = expand_path_template(text, vars);
  if (!out) {
    EXPECT_EQ(out.error().code, ErrorCode::kInvalidArgument);
    return "error: " + out.error().reason;
  }
  return *out;
}

std::string check(std::string_view text) {
  Result<void> ok = check_path_template(text);
  return ok ? "ok" : "error: " + ok.error().reason;
}

TEST(PathVarsTest, HashSequenceSplitsIntoDirNamePaddingAndExtension) {
  const PathVars vars = vars_of("/show/sh010/comp/sh010_comp_v003.####.exr");
  EXPECT_EQ(vars.path, "/show/sh010/comp/sh010_comp_v003.####.exr");
  EXPECT_EQ(vars.dir, "/show/sh010/comp");
  EXPECT_EQ(vars.name, "sh010_comp_v003");
  EXPECT_EQ(vars.ext, "exr");
  EXPECT_EQ(vars.frame, "####");
  // No frame set in the pattern: the frames are not known from the path alone.
  EXPECT_EQ(vars.first, "");
  EXPECT_EQ(vars.last, "");
  EXPECT_EQ(vars.frames, "");
  EXPECT_EQ(vars.event, "");
  EXPECT_TRUE(vars.meta.empty());
}

TEST(PathVarsTest, PrintfAndHoudiniPaddingOfFourBecomeHashes) {
  const PathVars printf_vars = vars_of("/show/sh010/comp/sh010_comp_v003.%04d.exr");
  EXPECT_EQ(printf_vars.frame, "####");
  EXPECT_EQ(printf_vars.name, "sh010_comp_v003");
  EXPECT_EQ(printf_vars.ext, "exr");
  const PathVars houdini_vars = vars_of("/show/sh010/comp/sh010_comp_v003.$F4.exr");
  EXPECT_EQ(houdini_vars.frame, "####");
  EXPECT_EQ(houdini_vars.name, "sh010_comp_v003");
  EXPECT_EQ(houdini_vars.dir, "/show/sh010/comp");
}

TEST(PathVarsTest, OtherPaddingsArePrintfAndUnpaddedIsPercentD) {
  EXPECT_EQ(vars_of("/r/a.%03d.exr").frame, "%03d");
  EXPECT_EQ(vars_of("/r/a.$F6.exr").frame, "%06d");
  EXPECT_EQ(vars_of("/r/a.%d.exr").frame, "%d");
  EXPECT_EQ(vars_of("/r/a.$F.exr").frame, "%d");
}

TEST(PathVarsTest, FrameSetInThePatternGivesFirstLastAndFrames) {
  const PathVars vars = vars_of("/show/sh010/comp/sh010_comp_v003.1001-1100#.exr");
  EXPECT_EQ(vars.name, "sh010_comp_v003");
  EXPECT_EQ(vars.frame, "####");
  EXPECT_EQ(vars.first, "1001");
  EXPECT_EQ(vars.last, "1100");
  EXPECT_EQ(vars.frames, "1001-1100");
}

TEST(PathVarsTest, SteppedAndGappedFrameSetsKeepTheirExtremes) {
  const PathVars vars = vars_of("/r/a.1-10x2,20,30-31@@@.dpx");
  EXPECT_EQ(vars.frame, "%03d");
  EXPECT_EQ(vars.first, "1");
  EXPECT_EQ(vars.last, "31");
  EXPECT_EQ(vars.ext, "dpx");
}

TEST(PathVarsTest, SingleFileHasNoFrameVars) {
  const PathVars vars = vars_of("/a/b/movie.mov");
  EXPECT_EQ(vars.path, "/a/b/movie.mov");
  EXPECT_EQ(vars.dir, "/a/b");
  EXPECT_EQ(vars.name, "movie");
  EXPECT_EQ(vars.ext, "mov");
  EXPECT_EQ(vars.frame, "");
  EXPECT_EQ(vars.first, "");
  EXPECT_EQ(vars.frames, "");
}

TEST(PathVarsTest, SingleFileKeepsInnerDotsInItsName) {
  const PathVars vars = vars_of("/a/b/archive.tar.gz");
  EXPECT_EQ(vars.name, "archive.tar");
  EXPECT_EQ(vars.ext, "gz");
  const PathVars bare = vars_of("/a/b/README");
  EXPECT_EQ(bare.name, "README");
  EXPECT_EQ(bare.ext, "");
}

TEST(PathVarsTest, UnderscoreAndDashSeparatorsBeforeTheNumberAreDropped) {
  EXPECT_EQ(vars_of("/r/plate_####.exr").name, "plate");
  EXPECT_EQ(vars_of("/r/plate_v002_####.exr").name, "plate_v002");
  EXPECT_EQ(vars_of("/r/plate-####.exr").name, "plate");
}

TEST(PathVarsTest, TextBetweenTheNumberAndTheExtensionStaysInTheName) {
  // Two AOVs of one render must not write to the same outputs.
  EXPECT_EQ(vars_of("/r/shot.####_bty.exr").name, "shot_bty");
  EXPECT_EQ(vars_of("/r/shot.####_spec.exr").name, "shot_spec");
  EXPECT_EQ(vars_of("/r/shot.####_spec.exr").ext, "exr");
  EXPECT_EQ(vars_of("/r/a.1-10#").name, "a");
  EXPECT_EQ(vars_of("/r/a.1-10#").ext, "");
}

TEST(PathVarsTest, SequenceWithoutANameCannotExpandName) {
  const PathVars vars = vars_of("/r/####.exr");
  EXPECT_EQ(vars.name, "");
  EXPECT_EQ(expand("{dir}/{name}.jpg", vars),
            "error: {name}: /r/####.exr has no name before its frame number");
}

TEST(PathVarsTest, FileInTheRootKeepsASlashAsItsDir) {
  EXPECT_EQ(vars_of("/movie.mov").dir, "/");
}

TEST(PathVarsTest, MalformedPatternIsAnError) {
  EXPECT_FALSE(path_vars("/r/a.@@#.exr"));
}

TEST(CheckPathTemplateTest, KnownPlaceholdersAndEscapesPass) {
  EXPECT_EQ(check("{dir}/proxy/{name}.{frame}.jpg"), "ok");
  EXPECT_EQ(check("{path} {ext} {first} {last} {frames} {event} {meta.shot} {meta.a-b.c_d}"), "ok");
  EXPECT_EQ(check("/literal/{{not_a_placeholder}}"), "ok");
  EXPECT_EQ(check(""), "ok");
}

TEST(CheckPathTemplateTest, UnknownPlaceholderNamesItAndListsTheKnownOnes) {
  EXPECT_EQ(check("{dir}/{nmae}.jpg"),
            "error: unknown placeholder {nmae} (known: path, dir, name, ext, frame, first, last, "
            "frames, event, meta.KEY)");
  EXPECT_THAT(check("{}"), HasSubstr("unknown placeholder {}"));
  EXPECT_THAT(check("{meta.}"), HasSubstr("unknown placeholder {meta.}"));
  EXPECT_THAT(check("{meta.a/b}"), HasSubstr("unknown placeholder {meta.a/b}"));
  EXPECT_THAT(check("{Name}"), HasSubstr("unknown placeholder {Name}"));
}

TEST(CheckPathTemplateTest, UnbalancedBracesAreErrors) {
  EXPECT_EQ(check("{dir}/{name"), "error: unclosed '{' in '{dir}/{name'");
  EXPECT_EQ(check("{dir}/name}"),
            "error: unmatched '}' in '{dir}/name}' (write }} for a literal brace)");
  EXPECT_THAT(check("{{name}"), HasSubstr("unmatched '}'"));
}

TEST(ExpandPathTemplateTest, SubstitutesEveryPlainPlaceholder) {
  PathVars vars = vars_of("/show/sh010/comp/sh010_comp_v003.1001-1100#.exr");
  vars.event = "ev-42";
  EXPECT_EQ(expand("{dir}/review/proxy/{name}.{frame}.jpg", vars),
            "/show/sh010/comp/review/proxy/sh010_comp_v003.####.jpg");
  EXPECT_EQ(expand("{path}", vars), "/show/sh010/comp/sh010_comp_v003.1001-1100#.exr");
  EXPECT_EQ(expand("{ext}:{first}:{last}:{frames}:{event}", vars), "exr:1001:1100:1001-1100:ev-42");
}

TEST(ExpandPathTemplateTest, DoubledBracesAreLiteral) {
  const PathVars vars = vars_of("/a/b/movie.mov");
  EXPECT_EQ(expand("{dir}/{{name}}.{ext}", vars), "/a/b/{name}.mov");
  EXPECT_EQ(expand("{{{name}}}", vars), "{movie}");
  EXPECT_EQ(expand("no placeholders", vars), "no placeholders");
}

TEST(ExpandPathTemplateTest, UnknownPlaceholderIsAnErrorAtExpansionToo) {
  const PathVars vars = vars_of("/a/b/movie.mov");
  EXPECT_THAT(expand("{dir}/{nmae}", vars), HasSubstr("unknown placeholder {nmae}"));
  EXPECT_THAT(expand("{dir", vars), HasSubstr("unclosed '{'"));
}

TEST(ExpandPathTemplateTest, MetaValuesAreSubstituted) {
  PathVars vars = vars_of("/show/sh010/comp/sh010_comp_v003.####.exr");
  vars.meta = {{"shot", "sh010"}, {"task", "comp"}, {"v.n", "v003 final"}};
  EXPECT_EQ(expand("/review/{meta.shot}/{meta.task}/{meta.v.n}.mov", vars),
            "/review/sh010/comp/v003 final.mov");
}

TEST(ExpandPathTemplateTest, MissingMetaKeyIsAnErrorNamingTheKey) {
  PathVars vars = vars_of("/a/b/movie.mov");
  vars.meta = {{"shot", "sh010"}};
  EXPECT_EQ(expand("/review/{meta.task}/x.jpg", vars),
            "error: the publish has no meta.task for {meta.task}");
}

TEST(ExpandPathTemplateTest, MetaValuesThatCouldEscapeThePathAreRefused) {
  PathVars vars = vars_of("/a/b/movie.mov");
  vars.meta = {
      {"slash", "../../etc"}, {"dotdot", ".."}, {"dot", "."},     {"empty", ""},
      {"newline", "a\nb"},    {"tab", "a\tb"},  {"del", "a\x7f"}, {"long", std::string(256, 'x')},
      {"fine", "..."}};
  EXPECT_EQ(expand("/r/{meta.slash}", vars),
            "error: meta.slash value '../../etc' cannot be part of a path");
  EXPECT_EQ(expand("/r/{meta.dotdot}", vars),
            "error: meta.dotdot value '..' cannot be part of a path");
  EXPECT_THAT(expand("/r/{meta.dot}", vars), HasSubstr("cannot be part of a path"));
  EXPECT_THAT(expand("/r/{meta.empty}", vars), HasSubstr("cannot be part of a path"));
  // The control character is escaped in the one-line reason.
  EXPECT_EQ(expand("/r/{meta.newline}", vars),
            "error: meta.newline value 'a\\x0ab' cannot be part of a path");
  EXPECT_THAT(expand("/r/{meta.tab}", vars), HasSubstr("cannot be part of a path"));
  EXPECT_THAT(expand("/r/{meta.del}", vars), HasSubstr("cannot be part of a path"));
  EXPECT_THAT(expand("/r/{meta.long}", vars), HasSubstr("cannot be part of a path"));
  EXPECT_EQ(expand("/r/{meta.fine}", vars), "/r/...");
  EXPECT_EQ(expand("/r/{{meta.slash}}", vars), "/r/{meta.slash}");  // escaped: not expanded
}

TEST(ExpandPathTemplateTest, FrameOfASingleFileIsAnError) {
  const PathVars vars = vars_of("/a/b/movie.mov");
  EXPECT_EQ(expand("{dir}/{name}.{frame}.jpg", vars),
            "error: {frame}: /a/b/movie.mov is not a sequence");
  EXPECT_EQ(expand("{first}", vars), "error: {first}: no frames of /a/b/movie.mov known");
  EXPECT_EQ(expand("{frames}", vars), "error: {frames}: no frames of /a/b/movie.mov known");
}

TEST(ExpandPathTemplateTest, FramesOfAPatternWithoutAFrameSetAreUnknown) {
  const PathVars vars = vars_of("/r/a.####.exr");
  EXPECT_EQ(expand("{frame}", vars), "####");
  EXPECT_THAT(expand("{first}", vars), HasSubstr("no frames of /r/a.####.exr known"));
}

TEST(ExpandPathTemplateTest, EmptyExtDirAndEventExpandToNothing) {
  const PathVars vars = vars_of("README");
  EXPECT_EQ(expand("[{dir}][{ext}][{event}]", vars), "[][][]");
}

}  // namespace
}  // namespace farmhand::common

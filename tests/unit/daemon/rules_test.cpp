#include "daemon/rules.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/sequence.h"

namespace farmhand::daemon {
namespace {

using ::testing::HasSubstr;
using testing_support::TempDir;
using Meta = std::map<std::string, std::string>;

void touch(const std::string& path) {
  std::ofstream(path) << "x";
}

// a.0001.exr ... a.0010.exr without a.0005.exr.
void write_sequence_with_a_gap(const TempDir& dir) {
  for (int frame = 1; frame <= 10; ++frame) {
    if (frame == 5) continue;
    char name[32];
    std::snprintf(name, sizeof name, "a.%04d.exr", frame);
    touch(dir.file(name));
  }
}

common::Config config_of(const std::string& text) {
  auto config = common::load_config_text(text);
  EXPECT_TRUE(config.has_value()) << config.error().reason;
  return config ? *config : common::Config{};
}

// The only rule of a config.
common::Rule rule_of(const std::string& text) {
  common::Config config = config_of(text);
  EXPECT_EQ(config.rules.size(), 1u);
  return config.rules.empty() ? common::Rule{} : config.rules[0];
}

// A rule with only a match and a noop job.
common::Rule matching(const std::string& match_lines) {
  return rule_of("rules:\n  - name: m\n    match:\n" + match_lines +
                 "    jobs: {a: {kind: noop}}\n");
}

// An item as resolve_publish makes it for `path`, without touching the disk.
PublishItem item_of(const std::string& path, const std::string& kind,
                    std::optional<common::FrameSet> frames = std::nullopt) {
  PublishItem item;
  item.path = path;
  item.kind = kind;
  auto vars = common::path_vars(path);
  EXPECT_TRUE(vars.has_value()) << path;
  if (vars) item.vars = *vars;
  if (frames) {
    item.vars.first = std::to_string(frames->frame_at(0));
    item.vars.last = std::to_string(frames->frame_at(frames->size() - 1));
    item.vars.frames = frames->to_string();
    item.frames = frames;
  }
  return item;
}

common::FrameSet frames(const std::string& text) {
  auto set = common::FrameSet::parse(text);
  EXPECT_TRUE(set.has_value()) << text;
  return set ? *set : common::FrameSet{};
}

// ------------------------------------------------------------------ resolve_publish

TEST(ResolvePublishTest, PatternTakesItsFramesFromTheDisk) {
  TempDir dir;
  write_sequence_with_a_gap(dir);
  const std::string pattern = dir.file("a.####.exr");
  auto items = resolve_publish(pattern);
  ASSERT_TRUE(items.has_value()) << items.error().reason;
  ASSERT_EQ(items->size(), 1u);
  const PublishItem& item = (*items)[0];
  EXPECT_EQ(item.path, pattern);
  EXPECT_EQ(item.kind, "sequence");
  ASSERT_TRUE(item.frames.has_value());
  EXPECT_EQ(item.frames->to_string(), "1-4,6-10");
  EXPECT_EQ(item.vars.dir, dir.path());
  EXPECT_EQ(item.vars.name, "a");
  EXPECT_EQ(item.vars.ext, "exr");
  EXPECT_EQ(item.vars.frame, "####");
  EXPECT_EQ(item.vars.first, "1");
  EXPECT_EQ(item.vars.last, "10");
  EXPECT_EQ(item.vars.frames, "1-4,6-10");
}

TEST(ResolvePublishTest, PrintfPatternFindsTheSameFrames) {
  TempDir dir;
  write_sequence_with_a_gap(dir);
  auto items = resolve_publish(dir.file("a.%04d.exr"));
  ASSERT_TRUE(items.has_value()) << items.error().reason;
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].vars.frames, "1-4,6-10");
}

TEST(ResolvePublishTest, PatternWithAFrameSetKeepsItsOwnFrames) {
  TempDir dir;
  write_sequence_with_a_gap(dir);
  auto items = resolve_publish(dir.file("a.2-3#.exr"));
  ASSERT_TRUE(items.has_value()) << items.error().reason;
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].vars.frames, "2-3");
  EXPECT_EQ((*items)[0].vars.first, "2");
}

TEST(ResolvePublishTest, PatternWithoutFramesOnDiskIsNotFound) {
  TempDir dir;
  write_sequence_with_a_gap(dir);
  auto items = resolve_publish(dir.file("b.####.exr"));
  ASSERT_FALSE(items.has_value());
  EXPECT_EQ(items.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(items.error().reason,
            "nothing published at " + dir.file("b.####.exr") + ": no frames on disk");
}

TEST(ResolvePublishTest, OtherPaddingFindsOnlyFramesWhoseNamesItWrites) {
  TempDir dir;
  for (int frame = 998; frame <= 1002; ++frame) {
    touch(dir.file("b." + std::to_string(frame) + ".exr"));  // padding 3: b.998.exr
  }
  for (int frame = 1001; frame <= 1003; ++frame) {
    touch(dir.file("c." + std::to_string(frame) + ".exr"));  // padding 4: c.1001.exr
  }
  // b.0998.exr does not exist: the 3-padded sequence is not b.####.exr nor b.%06d.exr.
  auto four = resolve_publish(dir.file("b.####.exr"));
  ASSERT_FALSE(four.has_value()) << four->at(0).vars.frames;
  EXPECT_EQ(four.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(resolve_publish(dir.file("b.%06d.exr")).has_value());
  auto three = resolve_publish(dir.file("b.@@@.exr"));
  ASSERT_TRUE(three.has_value()) << three.error().reason;
  EXPECT_EQ(three->at(0).vars.frames, "998-1002");
  // c.1001.exr is what an unpadded pattern writes for frame 1001.
  auto unpadded = resolve_publish(dir.file("c.%d.exr"));
  ASSERT_TRUE(unpadded.has_value()) << unpadded.error().reason;
  EXPECT_EQ(unpadded->at(0).vars.frames, "1001-1003");
  // a.0001.exr is not what an unpadded pattern writes for frame 1.
  touch(dir.file("a.0001.exr"));
  touch(dir.file("a.0002.exr"));
  EXPECT_FALSE(resolve_publish(dir.file("a.%d.exr")).has_value());
  EXPECT_TRUE(resolve_publish(dir.file("a.$F4.exr")).has_value());
}

TEST(ResolvePublishTest, SingleFileIsOneItemOfItsKind) {
  TempDir dir;
  touch(dir.file("movie.MOV"));
  touch(dir.file("still.tif"));
  touch(dir.file("notes.txt"));
  auto movie = resolve_publish(dir.file("movie.MOV"));
  ASSERT_TRUE(movie.has_value()) << movie.error().reason;
  ASSERT_EQ(movie->size(), 1u);
  EXPECT_EQ((*movie)[0].kind, "movie");
  EXPECT_EQ((*movie)[0].path, dir.file("movie.MOV"));
  EXPECT_FALSE((*movie)[0].frames.has_value());
  EXPECT_EQ((*movie)[0].vars.frame, "");
  EXPECT_EQ(resolve_publish(dir.file("still.tif"))->at(0).kind, "image");
  EXPECT_EQ(resolve_publish(dir.file("notes.txt"))->at(0).kind, "file");
}

TEST(ResolvePublishTest, DirectoryGivesAnItemPerSequenceAndFile) {
  TempDir dir;
  write_sequence_with_a_gap(dir);
  for (int frame = 1001; frame <= 1003; ++frame) {
    touch(dir.file("plate_v002." + std::to_string(frame) + ".dpx"));
  }
  touch(dir.file("movie.mov"));
  touch(dir.file(".hidden"));
  std::filesystem::create_directory(dir.file("sub"));
  touch(dir.file("sub/inner.0001.exr"));

  auto items = resolve_publish(dir.path());
  ASSERT_TRUE(items.has_value()) << items.error().reason;
  std::map<std::string, const PublishItem*> by_path;
  for (const PublishItem& item : *items) by_path[item.path] = &item;
  ASSERT_EQ(by_path.size(), 3u) << ::testing::PrintToString(*items);

  ASSERT_EQ(by_path.count(dir.file("a.####.exr")), 1u);
  const PublishItem& a = *by_path.at(dir.file("a.####.exr"));
  EXPECT_EQ(a.kind, "sequence");
  EXPECT_EQ(a.vars.frames, "1-4,6-10");
  ASSERT_TRUE(a.frames.has_value());
  EXPECT_EQ(a.frames->size(), 9u);

  ASSERT_EQ(by_path.count(dir.file("plate_v002.####.dpx")), 1u);
  const PublishItem& plate = *by_path.at(dir.file("plate_v002.####.dpx"));
  EXPECT_EQ(plate.vars.name, "plate_v002");
  EXPECT_EQ(plate.vars.frames, "1001-1003");

  ASSERT_EQ(by_path.count(dir.file("movie.mov")), 1u);
  EXPECT_EQ(by_path.at(dir.file("movie.mov"))->kind, "movie");
}

TEST(ResolvePublishTest, EmptyDirectoryIsNotFound) {
  TempDir dir;
  auto items = resolve_publish(dir.path());
  ASSERT_FALSE(items.has_value());
  EXPECT_EQ(items.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(items.error().reason, HasSubstr("it is empty"));
}

TEST(ResolvePublishTest, NonexistentPathIsNotFound) {
  TempDir dir;
  auto items = resolve_publish(dir.file("gone.mov"));
  ASSERT_FALSE(items.has_value());
  EXPECT_EQ(items.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(items.error().reason,
            "nothing published at " + dir.file("gone.mov") + ": no such file");
  auto pattern = resolve_publish(dir.file("missing/a.####.exr"));
  ASSERT_FALSE(pattern.has_value());
  EXPECT_EQ(pattern.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(pattern.error().reason, HasSubstr("nothing published at"));
}

TEST(ResolvePublishTest, RelativePathIsRefused) {
  auto items = resolve_publish("renders/a.####.exr");
  ASSERT_FALSE(items.has_value());
  EXPECT_EQ(items.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(items.error().reason, "publish path must be absolute: renders/a.####.exr");
  EXPECT_FALSE(resolve_publish("").has_value());
}

TEST(ResolvePublishTest, MalformedPatternIsAnError) {
  TempDir dir;
  auto items = resolve_publish(dir.file("a.@@#.exr"));
  ASSERT_FALSE(items.has_value());
  EXPECT_EQ(items.error().code, ErrorCode::kInvalidArgument);
}

// ------------------------------------------------------------------ rule_matches

TEST(RuleMatchesTest, RuleWithoutConditionsMatchesEverything) {
  const common::Rule rule = rule_of("rules:\n  - name: all\n    jobs: {a: {kind: noop}}\n");
  EXPECT_TRUE(rule_matches(rule, item_of("/r/a.####.exr", "sequence"), {}));
  EXPECT_TRUE(rule_matches(rule, item_of("/r/notes.txt", "file"), {}));
}

TEST(RuleMatchesTest, GlobWithoutASlashMatchesTheFileName) {
  const common::Rule rule = matching("      path: [\"sh*_comp_*.exr\"]\n");
  EXPECT_TRUE(rule_matches(rule, item_of("/show/sh010/sh010_comp_v003.####.exr", "sequence"), {}));
  EXPECT_FALSE(rule_matches(rule, item_of("/show/sh010/sh010_lgt_v003.####.exr", "sequence"), {}));
  // The directory is not part of what a slash-less glob sees.
  const common::Rule by_dir = matching("      path: [\"show*\"]\n");
  EXPECT_FALSE(rule_matches(by_dir, item_of("/show/sh010/a.####.exr", "sequence"), {}));
}

TEST(RuleMatchesTest, GlobWithASlashMatchesTheWholePathAndStarCrossesSlashes) {
  const common::Rule rule = matching("      path: [\"/show/*/comp/*.exr\"]\n");
  EXPECT_TRUE(rule_matches(rule, item_of("/show/sh010/comp/a.####.exr", "sequence"), {}));
  EXPECT_TRUE(rule_matches(rule, item_of("/show/sq1/sh010/comp/a.####.exr", "sequence"), {}));
  EXPECT_FALSE(rule_matches(rule, item_of("/show/sh010/lgt/a.####.exr", "sequence"), {}));
  EXPECT_FALSE(rule_matches(rule, item_of("/other/sh010/comp/a.####.exr", "sequence"), {}));
}

TEST(RuleMatchesTest, AnyOfSeveralGlobsMatches) {
  const common::Rule rule = matching("      path: [\"*.mov\", \"/plates/*\"]\n");
  EXPECT_TRUE(rule_matches(rule, item_of("/r/movie.mov", "movie"), {}));
  EXPECT_TRUE(rule_matches(rule, item_of("/plates/p.####.dpx", "sequence"), {}));
  EXPECT_FALSE(rule_matches(rule, item_of("/r/p.####.dpx", "sequence"), {}));
}

TEST(RuleMatchesTest, KindMatchesAndAnImageSequenceIsAlsoAnImage) {
  const PublishItem exr_sequence = item_of("/r/a.####.exr", "sequence");
  const PublishItem txt_sequence = item_of("/r/log.####.txt", "sequence");
  const PublishItem still = item_of("/r/still.tif", "image");
  const PublishItem movie = item_of("/r/movie.mov", "movie");
  const PublishItem file = item_of("/r/notes.txt", "file");

  const common::Rule sequences = matching("      kind: sequence\n");
  EXPECT_TRUE(rule_matches(sequences, exr_sequence, {}));
  EXPECT_TRUE(rule_matches(sequences, txt_sequence, {}));
  EXPECT_FALSE(rule_matches(sequences, still, {}));

  const common::Rule images = matching("      kind: image\n");
  EXPECT_TRUE(rule_matches(images, exr_sequence, {}));
  EXPECT_TRUE(rule_matches(images, still, {}));
  EXPECT_FALSE(rule_matches(images, txt_sequence, {}));
  EXPECT_FALSE(rule_matches(images, movie, {}));

  const common::Rule movies = matching("      kind: movie\n");
  EXPECT_TRUE(rule_matches(movies, movie, {}));
  EXPECT_FALSE(rule_matches(movies, exr_sequence, {}));

  const common::Rule files = matching("      kind: [file, movie]\n");
  EXPECT_TRUE(rule_matches(files, file, {}));
  EXPECT_TRUE(rule_matches(files, movie, {}));
  EXPECT_FALSE(rule_matches(files, still, {}));
}

TEST(RuleMatchesTest, ExtensionIsComparedWithoutCase) {
  const common::Rule rule = matching("      ext: [EXR, .Dpx]\n");
  EXPECT_TRUE(rule_matches(rule, item_of("/r/a.####.exr", "sequence"), {}));
  EXPECT_TRUE(rule_matches(rule, item_of("/r/a.####.EXR", "sequence"), {}));
  EXPECT_TRUE(rule_matches(rule, item_of("/r/still.DPX", "image"), {}));
  EXPECT_FALSE(rule_matches(rule, item_of("/r/still.tif", "image"), {}));
  EXPECT_FALSE(rule_matches(rule, item_of("/r/README", "file"), {}));
}

TEST(RuleMatchesTest, MetaValuesMustMatchTheirGlobs) {
  const common::Rule rule = matching("      meta: {task: comp, shot: \"sh0[0-4]*\"}\n");
  const PublishItem item = item_of("/r/a.####.exr", "sequence");
  EXPECT_TRUE(rule_matches(rule, item, Meta{{"task", "comp"}, {"shot", "sh010"}}));
  EXPECT_TRUE(rule_matches(rule, item, Meta{{"task", "comp"}, {"shot", "sh040"}, {"x", "y"}}));
  EXPECT_FALSE(rule_matches(rule, item, Meta{{"task", "comp"}, {"shot", "sh050"}}));
  EXPECT_FALSE(rule_matches(rule, item, Meta{{"task", "lgt"}, {"shot", "sh010"}}));
  EXPECT_FALSE(rule_matches(rule, item, Meta{{"task", "comp_v2"}, {"shot", "sh010"}}));
}

TEST(RuleMatchesTest, MissingMetaKeyDoesNotMatch) {
  const common::Rule rule = matching("      meta: {task: \"*\"}\n");
  const PublishItem item = item_of("/r/a.####.exr", "sequence");
  EXPECT_FALSE(rule_matches(rule, item, {}));
  EXPECT_FALSE(rule_matches(rule, item, Meta{{"shot", "sh010"}}));
  EXPECT_TRUE(rule_matches(rule, item, Meta{{"task", ""}}));
}

TEST(RuleMatchesTest, EveryConditionMustHold) {
  const common::Rule rule = matching(
      "      path: [\"/show/*\"]\n      kind: sequence\n      ext: exr\n      meta: {task: "
      "comp}\n");
  const PublishItem item = item_of("/show/sh010/a.####.exr", "sequence");
  EXPECT_TRUE(rule_matches(rule, item, Meta{{"task", "comp"}}));
  EXPECT_FALSE(rule_matches(rule, item, Meta{{"task", "lgt"}}));
  EXPECT_FALSE(
      rule_matches(rule, item_of("/show/sh010/a.####.dpx", "sequence"), Meta{{"task", "comp"}}));
  EXPECT_FALSE(rule_matches(rule, item_of("/tmp/a.####.exr", "sequence"), Meta{{"task", "comp"}}));
}

// ------------------------------------------------------------------ plan_rule

constexpr const char* kReviewRule = R"(rules:
  - name: review
    match: {kind: sequence}
    jobs:
      movie:
        kind: transcode
        input: "{dir}/review/proxy/{name}.{frame}.jpg"
        output: "{dir}/review/{name}.mov"
        after: [proxies]
      notify:
        kind: command
        command: notify
        params: {shot: "{meta.shot}", out: "{dir}/review/{name}.mov"}
        after: [movie, thumbnail]
      proxies:
        kind: convert
        output: "{dir}/review/proxy/{name}.{frame}.jpg"
        resize: 50%
        chunk: 4
      thumbnail:
        kind: thumbnail
        output: "{dir}/review/{meta.shot}_{name}.thumb.jpg"
        size: "256"
        lane: batch
        priority: 7
        pool: gpu
        max_attempts: 2
        timeout_s: 30
commands:
  notify:
    argv: [/bin/echo, "{shot}", "{out}"]
    params:
      shot: {}
      out: {}
)";

const PlannedJob* find(const std::vector<PlannedJob>& plan, const std::string& name) {
  for (const PlannedJob& job : plan) {
    if (job.name == name) return &job;
  }
  ADD_FAILURE() << "no planned job " << name;
  return nullptr;
}

size_t index_in(const std::vector<PlannedJob>& plan, const std::string& name) {
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].name == name) return i;
  }
  return plan.size();
}

TEST(PlanRuleTest, EveryJobOfTheRuleIsPlannedWithNamesAndLabels) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item =
      item_of("/show/sh010/comp/sh010_comp_v003.####.exr", "sequence", frames("1001-1010"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "sh010"}}, "ev-7");
  ASSERT_EQ(plan.size(), 4u);
  for (const PlannedJob& job : plan) {
    EXPECT_EQ(job.error, "") << job.name;
    EXPECT_EQ(job.spec.name(), "review/" + job.name + " sh010_comp_v003");
    EXPECT_EQ(job.spec.labels().at("rule"), "review/" + job.name);
    EXPECT_EQ(job.spec.labels().at("event"), "ev-7");
    EXPECT_EQ(job.spec.labels().size(), 2u);
  }
}

TEST(PlanRuleTest, NoEventIdMeansNoEventLabel) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/a.####.exr", "sequence", frames("1-10"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "s"}}, "");
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan[0].spec.labels().count("event"), 0u);
}

TEST(PlanRuleTest, AfterIndicesPointAtEarlierJobsOfThePlan) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/a.####.exr", "sequence", frames("1-10"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "s"}}, "ev");
  ASSERT_EQ(plan.size(), 4u);
  for (size_t i = 0; i < plan.size(); ++i) {
    for (size_t up : plan[i].after) EXPECT_LT(up, i) << plan[i].name;
    EXPECT_EQ(plan[i].spec.after_size(), 0);  // the broker fills the job ids
  }
  const PlannedJob* movie = find(plan, "movie");
  ASSERT_NE(movie, nullptr);
  EXPECT_EQ(movie->after, (std::vector<size_t>{index_in(plan, "proxies")}));
  const PlannedJob* notify = find(plan, "notify");
  ASSERT_NE(notify, nullptr);
  EXPECT_EQ(notify->after,
            (std::vector<size_t>{index_in(plan, "movie"), index_in(plan, "thumbnail")}));
  EXPECT_TRUE(find(plan, "proxies")->after.empty());
}

// A movie streamed behind its proxies: `after_frames` names a job of the
// rule, placed before it, and plans to that job's index.
TEST(PlanRuleTest, AfterFramesPointsAtTheJobTheMovieFollowsFrameByFrame) {
  const common::Rule rule = rule_of(R"(rules:
  - name: review
    match: {kind: sequence}
    jobs:
      movie:
        kind: transcode
        input: "{dir}/review/proxy/{name}.{frame}.jpg"
        output: "{dir}/review/{name}.mov"
        after_frames: proxies
      proxies:
        kind: convert
        output: "{dir}/review/proxy/{name}.{frame}.jpg"
        chunk: 10
)");
  const PublishItem item = item_of("/r/a.####.exr", "sequence", frames("1001-1100"));
  const auto plan = plan_rule(rule, item, Meta{}, "ev");
  ASSERT_EQ(plan.size(), 2u);
  const PlannedJob* movie = find(plan, "movie");
  ASSERT_NE(movie, nullptr);
  ASSERT_TRUE(movie->after_frames.has_value());
  EXPECT_EQ(*movie->after_frames, index_in(plan, "proxies"));
  EXPECT_LT(*movie->after_frames, index_in(plan, "movie"));
  EXPECT_TRUE(movie->after.empty());
  EXPECT_FALSE(find(plan, "proxies")->after_frames.has_value());
}

TEST(PlanRuleTest, LaneDefaultsToInteractiveForMediaAndBatchForCommands) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/a.####.exr", "sequence", frames("1-10"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "s"}}, "ev");
  EXPECT_EQ(find(plan, "proxies")->spec.lane(), "interactive");
  EXPECT_EQ(find(plan, "movie")->spec.lane(), "interactive");
  EXPECT_EQ(find(plan, "notify")->spec.lane(), "batch");
  EXPECT_EQ(find(plan, "thumbnail")->spec.lane(), "batch");  // set in the rule
}

TEST(PlanRuleTest, JobOptionsAndExpandedParamsAreInTheSpec) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item =
      item_of("/show/sh010/comp/sh010_comp_v003.####.exr", "sequence", frames("1001-1010"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "sh010"}}, "ev");

  const wire::JobSpec& thumbnail = find(plan, "thumbnail")->spec;
  EXPECT_EQ(thumbnail.kind(), "thumbnail");
  EXPECT_EQ(thumbnail.priority(), 7);
  EXPECT_EQ(thumbnail.pool(), "gpu");
  EXPECT_EQ(thumbnail.max_attempts(), 2u);
  EXPECT_EQ(thumbnail.timeout_s(), 30u);
  EXPECT_EQ(thumbnail.params().at("output"),
            "/show/sh010/comp/review/sh010_sh010_comp_v003.thumb.jpg");
  EXPECT_EQ(thumbnail.params().at("size"), "256");
  // Without `input` a media job reads the published item.
  EXPECT_EQ(thumbnail.params().at("input"), "/show/sh010/comp/sh010_comp_v003.####.exr");

  const wire::JobSpec& proxies = find(plan, "proxies")->spec;
  EXPECT_EQ(proxies.kind(), "convert");
  EXPECT_EQ(proxies.chunk(), 4u);
  EXPECT_EQ(proxies.params().at("output"),
            "/show/sh010/comp/review/proxy/sh010_comp_v003.####.jpg");
  EXPECT_EQ(proxies.params().at("resize"), "50%");

  const wire::JobSpec& notify = find(plan, "notify")->spec;
  EXPECT_EQ(notify.kind(), "command");
  EXPECT_EQ(notify.command_template(), "notify");
  EXPECT_EQ(notify.params().at("shot"), "sh010");
  EXPECT_EQ(notify.params().at("out"), "/show/sh010/comp/review/sh010_comp_v003.mov");
  // A command job on a sequence runs over the item's frames by default.
  EXPECT_EQ(notify.frames(), "1001-1010");
}

// A rule's web movie takes its sound from a path made of the publish's meta
// (a meta value is one path component), delayed as the rule says; a publish
// without the value gets that job's error, not a silent movie.
TEST(PlanRuleTest, AWebMovieTakesItsSoundFromThePublishsMeta) {
  const common::Rule rule = rule_of(R"(rules:
  - name: web
    match: {kind: sequence}
    jobs:
      movie:
        kind: transcode
        output: "{dir}/review/{name}.webm"
        codec: vp9
        crf: "30"
        audio: "/show/{meta.show}/sound/{meta.shot}.wav"
        audio_offset: "-2"
)");
  const PublishItem item =
      item_of("/show/sh010/comp/sh010_comp_v003.####.exr", "sequence", frames("1001-1010"));
  const auto plan = plan_rule(rule, item, Meta{{"show", "show"}, {"shot", "sh010"}}, "ev");
  const PlannedJob* movie = find(plan, "movie");
  ASSERT_TRUE(movie);
  EXPECT_EQ(movie->error, "");
  EXPECT_EQ(movie->spec.params().at("codec"), "vp9");
  EXPECT_EQ(movie->spec.params().at("crf"), "30");
  EXPECT_EQ(movie->spec.params().at("audio"), "/show/show/sound/sh010.wav");
  EXPECT_EQ(movie->spec.params().at("audio_offset"), "-2");

  const auto silent = plan_rule(rule, item, Meta{{"show", "show"}}, "ev");
  EXPECT_EQ(find(silent, "movie")->error, "the publish has no meta.shot for {meta.shot}");
}

// Burn-ins are the media process's templates: a rule passes them as written,
// with the publish's meta as their values ({shot} is meta.shot).
TEST(PlanRuleTest, BurnInsPassAsWrittenWithThePublishsMetaAsTheirValues) {
  const common::Rule rule = rule_of(R"(rules:
  - name: dailies
    match: {kind: sequence}
    jobs:
      movie:
        kind: transcode
        output: "{dir}/review/{name}.mov"
        slate: true
        burn_in: ["{shot} v{version}", "top-right={timecode}"]
)");
  const PublishItem item =
      item_of("/show/sh010/comp/sh010_comp_v003.####.exr", "sequence", frames("1001-1010"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "sh010"}, {"version", "3"}}, "ev");
  const PlannedJob* movie = find(plan, "movie");
  ASSERT_TRUE(movie);
  EXPECT_EQ(movie->error, "");
  EXPECT_EQ(movie->spec.params().at("burn_in"), "{shot} v{version}\ntop-right={timecode}");
  EXPECT_EQ(movie->spec.params().at("slate"), "true");
  EXPECT_EQ(movie->spec.params().at("meta.shot"), "sh010");
  EXPECT_EQ(movie->spec.params().at("meta.version"), "3");
}

TEST(PlanRuleTest, DerivedInputGetsTheItemsFramesWrittenIntoThePattern) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/a.####.exr", "sequence", frames("1-4,6-10"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "s"}}, "ev");
  const PlannedJob* movie = find(plan, "movie");
  ASSERT_NE(movie, nullptr);
  EXPECT_EQ(movie->error, "");
  // SequencePattern::to_string writes padding 4 after a frame set as a single '#'.
  EXPECT_EQ(movie->spec.params().at("input"), "/r/review/proxy/a.1-4,6-10#.jpg");
  EXPECT_EQ(movie->spec.params().at("output"), "/r/review/a.mov");
  auto parsed = common::SequencePattern::parse(movie->spec.params().at("input"));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->padding, 4);
  ASSERT_TRUE(parsed->frames.has_value());
  EXPECT_EQ(parsed->frames->to_string(), "1-4,6-10");
}

TEST(PlanRuleTest, DerivedInputKeepsAnOtherPaddingsStyle) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/a.%03d.exr", "sequence", frames("1-10"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "s"}}, "ev");
  const PlannedJob* movie = find(plan, "movie");
  ASSERT_NE(movie, nullptr);
  const std::string input = movie->spec.params().at("input");
  EXPECT_EQ(input, "/r/review/proxy/a.1-10%03d.jpg");
  auto parsed = common::SequencePattern::parse(input);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->padding, 3);
  EXPECT_EQ(parsed->frames->to_string(), "1-10");
}

TEST(PlanRuleTest, MissingMetaKeyIsAPlannedErrorNotACrash) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/a.####.exr", "sequence", frames("1-10"));
  const auto plan = plan_rule(rule, item, {}, "ev");
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(find(plan, "thumbnail")->error, "the publish has no meta.shot for {meta.shot}");
  EXPECT_EQ(find(plan, "notify")->error, "the publish has no meta.shot for {meta.shot}");
  EXPECT_EQ(find(plan, "proxies")->error, "");
  EXPECT_EQ(find(plan, "movie")->error, "");
}

TEST(PlanRuleTest, UnsafeMetaValueIsAPlannedError) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/a.####.exr", "sequence", frames("1-10"));
  const auto plan = plan_rule(rule, item, Meta{{"shot", "../../etc"}}, "ev");
  EXPECT_THAT(find(plan, "thumbnail")->error, HasSubstr("cannot be part of a path"));
}

TEST(PlanRuleTest, FrameOfASingleFileIsAPlannedError) {
  const common::Rule rule = rule_of(kReviewRule);
  const PublishItem item = item_of("/r/movie.mov", "movie");
  const auto plan = plan_rule(rule, item, Meta{{"shot", "s"}}, "ev");
  EXPECT_EQ(find(plan, "proxies")->error, "{frame}: /r/movie.mov is not a sequence");
  EXPECT_EQ(find(plan, "thumbnail")->error, "");
  EXPECT_EQ(find(plan, "thumbnail")->spec.params().at("input"), "/r/movie.mov");
  // A command job on a single file is one task.
  EXPECT_EQ(find(plan, "notify")->spec.frames(), "1");
}

TEST(PlanRuleTest, CommandFramesTemplateIsExpanded) {
  const common::Rule rule = rule_of(R"(rules:
  - name: r
    jobs:
      first: {kind: noop, frames: "{first}"}
      all: {kind: noop}
      range: {kind: noop, frames: "{first}-{last}"}
)");
  const auto plan = plan_rule(rule, item_of("/r/a.####.exr", "sequence", frames("5-9,20")), {}, "");
  EXPECT_EQ(find(plan, "first")->spec.frames(), "5");
  EXPECT_EQ(find(plan, "all")->spec.frames(), "5-9,20");
  EXPECT_EQ(find(plan, "range")->spec.frames(), "5-20");
  EXPECT_EQ(find(plan, "all")->spec.lane(), "batch");
  const auto single = plan_rule(rule, item_of("/r/notes.txt", "file"), {}, "");
  EXPECT_EQ(find(single, "all")->spec.frames(), "1");
  EXPECT_EQ(find(single, "first")->error, "{first}: no frames of /r/notes.txt known");
}

// ------------------------------------------------------------------ check_rule_jobs

TEST(CheckRuleJobsTest, ValidRulesPass) {
  const common::Config config = config_of(kReviewRule);
  auto ok = check_rule_jobs(config, "farmhand.yaml");
  EXPECT_TRUE(ok.has_value()) << ok.error().reason;
}

TEST(CheckRuleJobsTest, ShippedConfigPasses) {
  const char* source = std::getenv("FARMHAND_SOURCE_DIR");
  const std::filesystem::path root =
      source != nullptr && *source != '\0'
          ? std::filesystem::path(source)
          : std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
  auto config = common::load_config_file((root / "config" / "farmhand.yaml").string());
  ASSERT_TRUE(config.has_value()) << config.error().reason;
  EXPECT_FALSE(config->rules.empty());
  auto ok = check_rule_jobs(*config, "farmhand.yaml");
  EXPECT_TRUE(ok.has_value()) << ok.error().reason;
}

TEST(CheckRuleJobsTest, UnknownCodecIsReportedAtItsOwnLine) {
  const common::Config config = config_of(R"(rules:
  - name: review
    jobs:
      thumb:
        kind: thumbnail
        output: "{dir}/{name}.jpg"
      movie:
        kind: transcode
        output: "{dir}/{name}.mov"
        codec: x264
)");
  auto ok = check_rule_jobs(config, "farmhand.yaml");
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ok.error().reason,
            "farmhand.yaml:10: rule 'review' job 'movie': unknown codec 'x264' (h264, h265, vp9, "
            "av1, prores, dnxhr)");
}

TEST(CheckRuleJobsTest, RelativeOutputTemplateIsReported) {
  const common::Config config = config_of(R"(rules:
  - name: review
    jobs:
      thumb:
        kind: thumbnail
        output: "review/{name}.jpg"
)");
  auto ok = check_rule_jobs(config, "farmhand.yaml");
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().reason,
            "farmhand.yaml:4: rule 'review' job 'thumb': output must be an absolute path: "
            "review/sample.jpg");
}

TEST(CheckRuleJobsTest, EveryBadJobIsListedOnItsOwnLine) {
  const common::Config config = config_of(R"(rules:
  - name: a
    jobs:
      thumb:
        kind: thumbnail
        output: "{dir}/{name}.jpg"
        size: huge
  - name: b
    jobs:
      proxies:
        kind: convert
        output: "{dir}/{name}.{frame}.jpg"
        resize: "0%"
      notify:
        kind: noop
)");
  auto ok = check_rule_jobs(config, "f.yaml");
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().reason,
            "f.yaml:7: rule 'a' job 'thumb': bad --size 'huge' (WxH or W)\n"
            "f.yaml:13: rule 'b' job 'proxies': bad --resize '0%' (WxH, W or N%)");
}

TEST(CheckRuleJobsTest, MetaPlaceholdersGetSampleValues) {
  const common::Config config = config_of(R"(rules:
  - name: r
    jobs:
      thumb:
        kind: thumbnail
        output: "/review/{meta.show}/{meta.shot}/{name}.jpg"
)");
  auto ok = check_rule_jobs(config, "f.yaml");
  EXPECT_TRUE(ok.has_value()) << ok.error().reason;
}

TEST(CheckRuleJobsTest, ConvertOfASequenceToASingleFileIsReported) {
  const common::Config config = config_of(R"(rules:
  - name: r
    jobs:
      proxies:
        kind: convert
        output: "{dir}/{name}.jpg"
)");
  auto ok = check_rule_jobs(config, "f.yaml");
  ASSERT_FALSE(ok.has_value());
  EXPECT_THAT(ok.error().reason, HasSubstr("f.yaml:4: rule 'r' job 'proxies': output"));
  EXPECT_THAT(ok.error().reason, HasSubstr("needs frame padding"));
}

TEST(CheckRuleJobsTest, LiteralThumbnailFrameIsNotCheckedAgainstTheSampleFrames) {
  // Whether frame 1001 exists depends on the publish, not on the config.
  const common::Config config = config_of(R"(rules:
  - name: r
    jobs:
      thumb:
        kind: thumbnail
        output: "{dir}/{name}.jpg"
        frame: 1001
)");
  auto ok = check_rule_jobs(config, "f.yaml");
  EXPECT_TRUE(ok.has_value()) << ok.error().reason;
  const common::Config bad = config_of(R"(rules:
  - name: r
    jobs:
      thumb:
        kind: thumbnail
        output: "{dir}/{name}.jpg"
        frame: someday
)");
  auto refused = check_rule_jobs(bad, "f.yaml");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().reason,
            "f.yaml:7: rule 'r' job 'thumb': bad --frame 'someday' (first, middle, last or a "
            "number)");
}

TEST(CheckRuleJobsTest, OutputTemplateThatCanNameTheInputIsReportedAtTheJobsLine) {
  const common::Config config = config_of(R"(rules:
  - name: r
    match: {kind: sequence}
    jobs:
      regrade:
        kind: convert
        output: "{dir}/{name}.{frame}.{ext}"
        format: exr
)");
  auto ok = check_rule_jobs(config, "f.yaml");
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().reason,
            "f.yaml:5: rule 'r' job 'regrade': output /check/sample.0001.exr is the job's input "
            "frame 1: a job never overwrites what it reads");
}

TEST(CheckRuleJobsTest, OutputTemplateNamesTheInputOnlyForTheExtensionsTheRuleMatches) {
  // EXR proxies of DPX plates sit beside them: they can never be the plates.
  const common::Config dpx = config_of(R"(rules:
  - name: r
    match: {ext: [dpx]}
    jobs:
      linear:
        kind: convert
        output: "{dir}/{name}.{frame}.exr"
)");
  auto ok = check_rule_jobs(dpx, "f.yaml");
  EXPECT_TRUE(ok.has_value()) << ok.error().reason;
  // Without the ext match, an EXR publish would overwrite its own frames.
  const common::Config any = config_of(R"(rules:
  - name: r
    jobs:
      linear:
        kind: convert
        output: "{dir}/{name}.{frame}.exr"
)");
  auto refused = check_rule_jobs(any, "f.yaml");
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().reason, HasSubstr("a job never overwrites what it reads"));
}

}  // namespace
}  // namespace farmhand::daemon

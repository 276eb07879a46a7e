// OCIO configs for the media tests, written where a test wants them.
#pragma once

#include <fstream>
#include <string>

namespace farmhand::testing_support {

// The colour spaces of both configs: scene-linear, and the sRGB curve.
inline constexpr const char* kColourSpaces = R"(colorspaces:
  - !<ColorSpace>
    name: linear
    isdata: false
  - !<ColorSpace>
    name: srgb
    isdata: false
    from_scene_reference: !<ExponentWithLinearTransform> {gamma: 2.4, offset: 0.055, direction: inverse}
)";

// An OCIO v2 config in `dir` with one display whose default view is
// `view_space`: "srgb" (the sRGB curve, like OIIO's built-in) or "linear".
inline std::string write_one_display_config(const std::string& dir, const std::string& view_space) {
  const std::string path = dir + "/config-" + view_space + ".ocio";
  std::ofstream(path) << R"(ocio_profile_version: 2
roles:
  default: linear
  scene_linear: linear
displays:
  monitor:
    - !<View> {name: standard, colorspace: )"
                      << view_space << R"(}
active_displays: [monitor]
active_views: [standard]
)" << kColourSpaces;
  return path;
}

// An OCIO v2 config in `dir` with two displays: "monitor" (first: the
// default) whose only view is linear, and "sRGB" with views "standard" (the
// sRGB curve) and "raw"; and a look "half" that halves the light.
inline std::string write_two_display_config(const std::string& dir) {
  const std::string path = dir + "/two-displays.ocio";
  std::ofstream(path) << R"(ocio_profile_version: 2
roles:
  default: linear
  scene_linear: linear
displays:
  monitor:
    - !<View> {name: flat, colorspace: linear}
  sRGB:
    - !<View> {name: standard, colorspace: srgb}
    - !<View> {name: raw, colorspace: linear}
active_displays: [monitor, sRGB]
active_views: [flat, standard, raw]
looks:
  - !<Look>
    name: half
    process_space: linear
    transform: !<CDLTransform> {slope: [0.5, 0.5, 0.5]}
)" << kColourSpaces;
  return path;
}

}  // namespace farmhand::testing_support

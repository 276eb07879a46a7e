// The wire form of an OpenJD submission (farmhand.wire.OpenJdSource) as
// openjd::create_job takes it: what broker and workers both make the job from.
#pragma once

#include "farmhand.pb.h"
#include "openjd/source.h"

namespace farmhand::openjd {

JobSource job_source(const wire::OpenJdSource& source);

}  // namespace farmhand::openjd

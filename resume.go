package main

import "github.com/runh-project/runh/libruntime"

var resumeCommand = idVerb("resume", "thaw a paused container", (*libruntime.Runtime).Resume)

package main

import "github.com/runh-project/runh/libruntime"

var pauseCommand = idVerb("pause", "freeze all processes of a container", (*libruntime.Runtime).Pause)

package main

import "github.com/runh-project/runh/libruntime"

var startCommand = idVerb("start", "run the user process of a created container", (*libruntime.Runtime).Start)

module github.com/sysdesign-course/course/stages

go 1.26.0

// Command hello is a trivial program that testbin's own test builds.
package main

import "fmt"

func main() { fmt.Println("hello from testbin") }

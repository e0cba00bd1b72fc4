@.str = private unnamed_addr constant [3 x i8] c"OK\00"

declare i32 @puts(i8*)

define i32 @main() {
  %1 = call i32 @puts(i8* getelementptr inbounds ([3 x i8], [3 x i8]* @.str, i64 0, i64 0))
  ret i32 0
}

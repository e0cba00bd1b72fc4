fun main(args: Array<String>) {
    generateSequence(::readLine).count()
    println(listOf("O", "K").joinToString(""))
}

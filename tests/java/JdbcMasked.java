// pgjdbc through the gateway on a masked resource: a prepared statement executed past
// pgjdbc's prepareThreshold (5), so it switches to a server-side statement and binary
// transfer, keeps decoding and never sees a masked value. Prints one JSON line.
// Run: java -cp /usr/share/java/postgresql.jar JdbcMasked.java HOST PORT TOKEN CA
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.Properties;

public class JdbcMasked {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/demo";
        Properties props = new Properties();
        props.setProperty("user", "alice");
        props.setProperty("password", args[2]);
        props.setProperty("sslmode", "verify-ca");
        props.setProperty("sslrootcert", args[3]);
        StringBuilder seen = new StringBuilder();
        int ids = 0;
        try (Connection conn = DriverManager.getConnection(url, props)) {
            try (PreparedStatement ps = conn.prepareStatement("SELECT id, name, email, ssn FROM customers WHERE id = ?")) {
                for (int i = 0; i < 10; i++) {
                    ps.setInt(1, 1);
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            ids += rs.getInt(1);
                            seen.append(rs.getString(2)).append('|').append(rs.getString(3)).append('|').append(rs.getString(4)).append(';');
                        }
                    }
                }
            }
        }
        String rows = seen.toString().replace("\"", "'");
        System.out.println("{\"ids\": " + ids + ", \"rows\": \"" + rows + "\"}");
    }
}
